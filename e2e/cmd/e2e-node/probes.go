package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probe runs the container's startup, readiness and liveness probes as the
// kubelet does: readiness and liveness only after startup succeeded; a
// container without a readiness probe is ready once started; liveness
// failures ask for a restart.
func (w *podWorker) probe(ctx context.Context, c corev1.Container, restart chan<- struct{}) {
	setReady := func(ready bool) {
		w.mu.Lock()
		st := w.statuses[c.Name]
		changed := st.Ready != ready
		st.Ready = ready
		w.mu.Unlock()
		if changed {
			w.notify()
		}
	}
	if p := c.StartupProbe; p != nil {
		if !w.until(ctx, c, p, true) {
			select {
			case restart <- struct{}{}:
			default:
			}
			return
		}
	}
	if c.LivenessProbe != nil {
		go func() {
			if !w.until(ctx, c, c.LivenessProbe, false) {
				select {
				case restart <- struct{}{}:
				default:
				}
			}
		}()
	}
	p := c.ReadinessProbe
	if p == nil {
		setReady(true)
		return
	}
	if !sleepCtx(ctx, time.Duration(p.InitialDelaySeconds)*time.Second) {
		return
	}
	successes, failures := 0, 0
	ready := false
	for {
		err := w.probeOnce(ctx, c, p)
		if err == nil {
			successes, failures = successes+1, 0
			if !ready && successes >= int(max(p.SuccessThreshold, 1)) {
				ready = true
				setReady(true)
			}
		} else {
			successes, failures = 0, failures+1
			if ready && failures >= int(max(p.FailureThreshold, 1)) {
				ready = false
				setReady(false)
			}
		}
		if !sleepCtx(ctx, period(p)) {
			return
		}
	}
}

// until probes periodically. For a startup probe it returns true at the
// first success and false after failureThreshold failures; for a liveness
// probe it returns false after failureThreshold consecutive failures and
// otherwise runs until ctx ends.
func (w *podWorker) until(ctx context.Context, c corev1.Container, p *corev1.Probe, startup bool) bool {
	if !sleepCtx(ctx, time.Duration(p.InitialDelaySeconds)*time.Second) {
		return true
	}
	failures := 0
	for {
		if err := w.probeOnce(ctx, c, p); err == nil {
			failures = 0
			if startup {
				return true
			}
		} else {
			failures++
			if failures >= int(max(p.FailureThreshold, 1)) {
				return false
			}
		}
		if !sleepCtx(ctx, period(p)) {
			return true
		}
	}
}

func period(p *corev1.Probe) time.Duration {
	if p.PeriodSeconds <= 0 {
		return 10 * time.Second
	}
	return time.Duration(p.PeriodSeconds) * time.Second
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// probeOnce runs one httpGet or tcpSocket probe against the pod's address.
// HTTPS probes do not verify the certificate, as the kubelet's.
func (w *podWorker) probeOnce(ctx context.Context, c corev1.Container, p *corev1.Probe) error {
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		g := p.HTTPGet
		port, err := resolvePort(g.Port, c)
		if err != nil {
			return err
		}
		host := g.Host
		if host == "" {
			host = w.addr.Host
		}
		scheme := strings.ToLower(string(g.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		url := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, fmt.Sprint(port)), g.Path)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "kube-probe/1.37")
		for _, h := range g.HTTPHeaders {
			req.Header.Set(h.Name, h.Value)
		}
		client := &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as the kubelet's probes
			DisableKeepAlives: true,
		}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
		}
		return nil
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, c)
		if err != nil {
			return err
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(w.addr.Host, fmt.Sprint(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	}
	return fmt.Errorf("unsupported probe (exec and grpc probes are not served here)")
}

func resolvePort(port intstr.IntOrString, c corev1.Container) (int32, error) {
	if port.Type == intstr.Int {
		return port.IntVal, nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return p.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.Name, port.StrVal)
}
