package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// podNetwork hands out pod addresses and carries kube-apiserver's
// connections to pods.
//
// A pod has two addresses: its API address (status.podIP, what the
// endpointslice controller publishes) from the pod CIDR, which is never
// dialled, and its host address on a loopback /24 that this process holds
// alone (a lock file), where the pod's processes listen. The egress
// selector hands every connection of kube-apiserver to the "cluster"
// (webhook calls) to serveEgress as `CONNECT <podIP>:<port>`; it is
// forwarded to `<host address>:<port>`.
type podNetwork struct {
	mu         sync.Mutex
	podPrefix  netip.Prefix
	hostPrefix string // "127.A.B"
	lock       *os.File
	used       map[int]string // host index -> pod UID
	byAPIAddr  map[netip.Addr]string
	connLog    *os.File
	listener   net.Listener
}

func newPodNetwork(podCIDR, dir string) (*podNetwork, error) {
	prefix, err := netip.ParsePrefix(podCIDR)
	if err != nil || !prefix.Addr().Is4() || prefix.Bits() > 24 {
		return nil, fmt.Errorf("--pod-cidr %q: want an IPv4 prefix of /24 or wider", podCIDR)
	}
	n := &podNetwork{podPrefix: prefix.Masked(), used: map[int]string{}, byAPIAddr: map[netip.Addr]string{}}
	// A loopback /24 no other e2e-node on this machine uses: the lock is
	// held while this process lives and released by the kernel when it dies.
	lockDir := filepath.Join(os.TempDir(), "imagegate-e2e-hostnets")
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 200 && n.lock == nil; attempt++ {
		a, b := 100+rand.IntN(100), 1+rand.IntN(254)
		f, err := os.OpenFile(filepath.Join(lockDir, fmt.Sprintf("127.%d.%d.lock", a, b)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		n.lock, n.hostPrefix = f, fmt.Sprintf("127.%d.%d", a, b)
	}
	if n.lock == nil {
		return nil, fmt.Errorf("no free loopback /24 for pod host addresses")
	}
	if n.connLog, err = os.OpenFile(filepath.Join(dir, "egress.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, err
	}
	return n, nil
}

// podAddresses is what allocate gives one pod.
type podAddresses struct {
	API   netip.Addr // status.podIP
	Host  string     // where its processes listen
	index int
}

// allocate reserves the lowest free index for a pod: API address
// <pod prefix> + index, host address 127.A.B.<index>.
func (n *podNetwork) allocate(uid string) (podAddresses, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := 2; i < 255; i++ {
		if _, taken := n.used[i]; taken {
			continue
		}
		api := n.podPrefix.Addr().As4()
		api[3] += byte(i)
		addr := netip.AddrFrom4(api)
		n.used[i] = uid
		n.byAPIAddr[addr] = fmt.Sprintf("%s.%d", n.hostPrefix, i)
		return podAddresses{API: addr, Host: n.byAPIAddr[addr], index: i}, nil
	}
	return podAddresses{}, fmt.Errorf("pod network full")
}

func (n *podNetwork) release(a podAddresses) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.byAPIAddr, a.API)
	delete(n.used, a.index)
}

func (n *podNetwork) hostFor(api netip.Addr) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.byAPIAddr[api]
	return h, ok
}

// serveEgress answers kube-apiserver's HTTP CONNECT requests on a Unix
// socket (EgressSelectorConfiguration, proxyProtocol HTTPConnect).
func (n *podNetwork) serveEgress(ctx context.Context, socket string) error {
	_ = os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	n.listener = l
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go n.tunnel(c)
		}
	}()
	return nil
}

// tunnel reads one CONNECT request and splices the connection to the pod.
// kube-apiserver expects exactly a 200 status line and headers, then the
// TLS bytes of the webhook call.
func (n *podNetwork) tunnel(c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	target := req.Host
	if req.Method != http.MethodConnect {
		n.logConn(target, "", "refused: not CONNECT")
		fmt.Fprint(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		n.logConn(target, "", "refused: not ip:port")
		fmt.Fprint(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
		return
	}
	host, ok := n.hostFor(ap.Addr())
	if !ok {
		// Never dial an address that is not a pod of ours.
		n.logConn(target, "", "refused: no such pod")
		fmt.Fprint(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
		return
	}
	dest := net.JoinHostPort(host, fmt.Sprint(ap.Port()))
	up, err := net.DialTimeout("tcp", dest, 5*time.Second)
	if err != nil {
		n.logConn(target, dest, "refused: "+err.Error())
		fmt.Fprint(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	n.logConn(target, dest, "connected")
	if _, err := fmt.Fprint(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, br); closeWrite(up); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// logConn appends one JSON line per tunnel to <dir>/egress.log, which the
// tests read to see where kube-apiserver's webhook calls went.
func (n *podNetwork) logConn(target, dest, result string) {
	line, _ := json.Marshal(map[string]string{"time": time.Now().UTC().Format(time.RFC3339Nano), "connect": target, "to": dest, "result": result})
	n.mu.Lock()
	defer n.mu.Unlock()
	_, _ = n.connLog.Write(append(line, '\n'))
	if result != "connected" {
		klog.Warningf("egress CONNECT %s: %s", target, result)
	}
}

func (n *podNetwork) close() {
	if n.listener != nil {
		n.listener.Close()
	}
	n.connLog.Close()
	n.lock.Close()
}
