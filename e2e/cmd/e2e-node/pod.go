package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// podWorker runs one pod: volumes, init containers, containers, probes,
// status, termination.
type podWorker struct {
	k   *kubelet
	dir string

	mu        sync.Mutex
	pod       *corev1.Pod
	addr      podAddresses
	statuses  map[string]*corev1.ContainerStatus
	initDone  bool
	volsReady bool
	procs     map[string]*exec.Cmd
	phase     corev1.PodPhase
	message   string

	changed   chan struct{}
	terminate chan struct{}
	gone      chan struct{}
	stopOnce  sync.Once
	goneOnce  sync.Once
	killNow   bool
}

func newPodWorker(k *kubelet, pod *corev1.Pod) *podWorker {
	return &podWorker{
		k:         k,
		pod:       pod.DeepCopy(),
		dir:       filepath.Join(k.cfg.dir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)),
		statuses:  map[string]*corev1.ContainerStatus{},
		procs:     map[string]*exec.Cmd{},
		phase:     corev1.PodPending,
		changed:   make(chan struct{}, 1),
		terminate: make(chan struct{}),
		gone:      make(chan struct{}),
	}
}

func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	w.pod = pod.DeepCopy()
	w.mu.Unlock()
	if pod.DeletionTimestamp != nil {
		w.stopOnce.Do(func() { close(w.terminate) })
	}
}

// deleted: the pod is gone from the API (force deletion): stop at once.
func (w *podWorker) deleted() {
	w.mu.Lock()
	w.killNow = true
	w.mu.Unlock()
	w.goneOnce.Do(func() { close(w.gone) })
	w.stopOnce.Do(func() { close(w.terminate) })
}

// shutdown: the node stops.
func (w *podWorker) shutdown() {
	w.goneOnce.Do(func() { close(w.gone) })
	w.stopOnce.Do(func() { close(w.terminate) })
}

func (w *podWorker) snapshot() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod.DeepCopy()
}

func (w *podWorker) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

func (w *podWorker) run(ctx context.Context) {
	pod := w.snapshot()
	klog.Infof("pod %s/%s on %s: starting", pod.Namespace, pod.Name, pod.Spec.NodeName)
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		klog.Errorf("pod %s/%s: %v", pod.Namespace, pod.Name, err)
		return
	}
	addr, err := w.k.network.allocate(string(pod.UID))
	if err != nil {
		klog.Errorf("pod %s/%s: %v", pod.Namespace, pod.Name, err)
		return
	}
	defer w.k.network.release(addr)
	w.mu.Lock()
	w.addr = addr
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		w.statuses[c.Name] = &corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "e2e-node://" + repository(c.Image),
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
		}
	}
	w.mu.Unlock()

	statusCtx, stopStatus := context.WithCancel(ctx)
	statusDone := make(chan struct{})
	go func() { defer close(statusDone); w.statusLoop(statusCtx) }()
	w.notify()

	volumes := newVolumes(w, filepath.Join(w.dir, "volumes"))
	defer volumes.stop()
	for {
		err := volumes.prepare(ctx)
		if err == nil {
			break
		}
		w.setMessage(fmt.Sprintf("volumes: %v", err))
		select {
		case <-w.terminate:
			w.finish(ctx, stopStatus, statusDone)
			return
		case <-time.After(2 * time.Second):
		}
	}
	w.mu.Lock()
	w.volsReady = true
	w.message = ""
	w.mu.Unlock()
	w.notify()

	// Init containers, in order, each to completion.
	for _, c := range pod.Spec.InitContainers {
		for attempt := 0; ; attempt++ {
			code, stopped := w.runOnce(ctx, c, volumes, false)
			if stopped {
				w.finish(ctx, stopStatus, statusDone)
				return
			}
			if code == 0 {
				break
			}
			if pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
				w.setPhase(corev1.PodFailed, fmt.Sprintf("init container %s exited with %d", c.Name, code))
				w.finish(ctx, stopStatus, statusDone)
				return
			}
			if w.sleepOrStop(backoff(attempt)) {
				w.finish(ctx, stopStatus, statusDone)
				return
			}
		}
	}
	w.mu.Lock()
	w.initDone = true
	w.mu.Unlock()
	w.notify()

	var wg sync.WaitGroup
	results := make([]int, len(pod.Spec.Containers))
	for i, c := range pod.Spec.Containers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = w.runContainer(ctx, c, volumes, pod.Spec.RestartPolicy)
		}()
	}
	wg.Wait()
	select {
	case <-w.terminate:
	default:
		// Every container ended for good (restartPolicy Never/OnFailure).
		failed := false
		for _, r := range results {
			failed = failed || r != 0
		}
		if failed {
			w.setPhase(corev1.PodFailed, "")
		} else {
			w.setPhase(corev1.PodSucceeded, "")
		}
	}
	w.finish(ctx, stopStatus, statusDone)
}

// finish writes the last status, and for a deleted pod completes the
// deletion (as the kubelet does once its containers are gone).
func (w *podWorker) finish(ctx context.Context, stopStatus context.CancelFunc, statusDone chan struct{}) {
	w.notify()
	time.Sleep(50 * time.Millisecond) // let the status loop pick up the last change
	stopStatus()
	<-statusDone
	select {
	case <-w.gone:
		return
	default:
	}
	pod := w.snapshot()
	if pod.DeletionTimestamp == nil {
		_ = w.writeStatus(ctx)
		return
	}
	w.k.finalizeDeletion(ctx, pod)
	_ = os.RemoveAll(w.dir)
}

func (w *podWorker) sleepOrStop(d time.Duration) bool {
	select {
	case <-w.terminate:
		return true
	case <-time.After(d):
		return false
	}
}

func (w *podWorker) setPhase(p corev1.PodPhase, msg string) {
	w.mu.Lock()
	w.phase, w.message = p, msg
	w.mu.Unlock()
	w.notify()
}

func (w *podWorker) setMessage(msg string) {
	w.mu.Lock()
	w.message = msg
	w.mu.Unlock()
	w.notify()
}

// runContainer runs a container until the pod stops or its restart policy
// says it is done; it returns the last exit code.
func (w *podWorker) runContainer(ctx context.Context, c corev1.Container, volumes *volumeSet, policy corev1.RestartPolicy) int {
	for attempt := 0; ; attempt++ {
		code, stopped := w.runOnce(ctx, c, volumes, true)
		if stopped {
			return code
		}
		if policy == corev1.RestartPolicyNever || (policy == corev1.RestartPolicyOnFailure && code == 0) {
			return code
		}
		w.mu.Lock()
		st := w.statuses[c.Name]
		st.RestartCount++
		st.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off restarting failed container %s", c.Name)}}
		w.mu.Unlock()
		w.notify()
		if w.sleepOrStop(backoff(attempt)) {
			return code
		}
	}
}

// runOnce starts the container's process and waits for it to exit or for
// the pod to stop. It returns the exit code and whether the pod stopped.
func (w *podWorker) runOnce(ctx context.Context, c corev1.Container, volumes *volumeSet, probed bool) (int, bool) {
	cmd, err := w.command(c, volumes)
	if err != nil {
		w.mu.Lock()
		w.statuses[c.Name].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason: "CreateContainerError", Message: err.Error()}}
		w.mu.Unlock()
		w.notify()
		klog.Warningf("pod %s: container %s: %v", w.dir, c.Name, err)
		if w.sleepOrStop(5 * time.Second) {
			return 1, true
		}
		return 1, false
	}
	if err := cmd.Start(); err != nil {
		w.mu.Lock()
		w.statuses[c.Name].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason: "StartError", Message: err.Error()}}
		w.mu.Unlock()
		w.notify()
		if w.sleepOrStop(5 * time.Second) {
			return 1, true
		}
		return 1, false
	}
	started := metav1.Now()
	w.mu.Lock()
	w.procs[c.Name] = cmd
	st := w.statuses[c.Name]
	st.ContainerID = fmt.Sprintf("e2e-node://%d", cmd.Process.Pid)
	st.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}
	st.Ready = false
	t := true
	st.Started = &t
	w.mu.Unlock()
	w.writeInfo()
	w.notify()

	exited := make(chan int, 1)
	go func() {
		err := cmd.Wait()
		code := 0
		if err != nil {
			code = exitCode(cmd)
		}
		exited <- code
	}()
	probeCtx, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	restart := make(chan struct{}, 1)
	if probed {
		go w.probe(probeCtx, c, restart)
	} else {
		w.mu.Lock()
		f := false
		st.Started = &f
		w.mu.Unlock()
	}

	var code int
	stopped := false
	select {
	case code = <-exited:
	case <-restart:
		// Liveness failure: the kubelet kills the container and restarts it.
		w.kill(cmd, w.grace(), exited)
		code = <-exited
	case <-w.terminate:
		stopped = true
		w.mu.Lock()
		now := w.killNow
		w.mu.Unlock()
		grace := w.grace()
		if now {
			grace = 0
		}
		w.kill(cmd, grace, exited)
		code = <-exited
	}
	stopProbes()
	w.mu.Lock()
	delete(w.procs, c.Name)
	last := st.State
	st.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: int32(code), Reason: reason(code), StartedAt: started, FinishedAt: metav1.Now(),
		ContainerID: st.ContainerID}}
	st.LastTerminationState = last
	st.Ready = false
	f := false
	st.Started = &f
	w.mu.Unlock()
	w.notify()
	return code, stopped
}

func reason(code int) string {
	if code == 0 {
		return "Completed"
	}
	return "Error"
}

func exitCode(cmd *exec.Cmd) int {
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

// grace is the pod's termination grace period.
func (w *podWorker) grace() time.Duration {
	pod := w.snapshot()
	if pod.DeletionGracePeriodSeconds != nil {
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// kill sends SIGTERM to the container's process group, then SIGKILL after
// the grace period if it has not exited (it puts the exit code back).
func (w *podWorker) kill(cmd *exec.Cmd, grace time.Duration, exited chan int) {
	pgid := cmd.Process.Pid
	if grace > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case code := <-exited:
			exited <- code
			return
		case <-time.After(grace):
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// writeInfo records where the pod's processes are, for the tests
// (<dir>/pods/<ns>_<name>_<uid>/pod.json).
func (w *podWorker) writeInfo() {
	w.mu.Lock()
	defer w.mu.Unlock()
	pids := map[string]int{}
	for name, cmd := range w.procs {
		pids[name] = cmd.Process.Pid
	}
	writeJSON(filepath.Join(w.dir, "pod.json"), map[string]any{
		"namespace": w.pod.Namespace, "name": w.pod.Name, "uid": string(w.pod.UID), "node": w.pod.Spec.NodeName,
		"podIP": w.addr.API.String(), "hostAddress": w.addr.Host, "pids": pids,
	})
}

var envRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// expand resolves $(VAR) references as the kubelet does ($$ is a literal $;
// unknown references stay as they are).
func expand(s string, env map[string]string) string {
	return envRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// command builds the container's process: the image's program with the
// container's args, its env, volumes and user, in a new mount namespace
// (containerInit does the mounts and drops privileges, then execs).
func (w *podWorker) command(c corev1.Container, volumes *volumeSet) (*exec.Cmd, error) {
	pod := w.snapshot()
	prog, _ := w.k.program(c.Image)
	argv := append([]string{}, prog.Entrypoint...)
	env, order, err := w.env(pod, c)
	if err != nil {
		return nil, err
	}
	if len(c.Command) > 0 {
		if filepath.Base(c.Command[0]) != filepath.Base(prog.Entrypoint[0]) {
			return nil, fmt.Errorf("image %s has no %s (it is %s)", c.Image, c.Command[0], prog.Entrypoint[0])
		}
		argv = append([]string{prog.Entrypoint[0]}, c.Command[1:]...)
	}
	for _, a := range c.Args {
		argv = append(argv, expand(a, env))
	}
	for i := 1; i < len(argv); i++ {
		argv[i] = w.bindAddress(argv[i], c)
	}
	mounts, err := volumes.mounts(c)
	if err != nil {
		return nil, err
	}
	uid, gid, groups := identity(pod, c)
	workDir := c.WorkingDir
	if workDir == "" {
		workDir = "/"
	}
	spec := initSpec{Argv: argv, Mounts: mounts, UID: uid, GID: gid, Groups: groups, WorkDir: workDir}
	specPath := filepath.Join(w.dir, c.Name+".init.json")
	writeJSON(specPath, spec)

	logFile, err := os.OpenFile(filepath.Join(w.dir, c.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logFile, "--- e2e-node: starting %s: %q\n", c.Name, argv)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, containerInitArg, specPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	for _, k := range order {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS,
		Setpgid:    true,
		// The container dies with this process (the node going away).
		Pdeathsig: syscall.SIGKILL,
	}
	return cmd, nil
}

// bindAddress maps a listen address of one of the container's ports from
// "all interfaces" to the pod's host address: each pod has an interface of
// its own, so two replicas can both listen on 0.0.0.0:8443.
func (w *podWorker) bindAddress(arg string, c corev1.Container) string {
	for _, p := range c.Ports {
		for _, any := range []string{"0.0.0.0", "[::]"} {
			a := fmt.Sprintf("%s:%d", any, p.ContainerPort)
			if strings.Contains(arg, a) {
				arg = strings.ReplaceAll(arg, a, fmt.Sprintf("%s:%d", w.addr.Host, p.ContainerPort))
			}
		}
	}
	return arg
}

func identity(pod *corev1.Pod, c corev1.Container) (int, int, []int) {
	uid, gid := 0, 0
	var groups []int
	if sc := pod.Spec.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = int(*sc.RunAsUser)
		}
		if sc.RunAsGroup != nil {
			gid = int(*sc.RunAsGroup)
		}
		if sc.FSGroup != nil {
			groups = append(groups, int(*sc.FSGroup))
		}
		for _, g := range sc.SupplementalGroups {
			groups = append(groups, int(g))
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = int(*sc.RunAsUser)
		}
		if sc.RunAsGroup != nil {
			gid = int(*sc.RunAsGroup)
		}
	}
	return uid, gid, groups
}

// env is the container's environment, in the kubelet's order: the
// service variables of the "kubernetes" Service, then the container's env.
func (w *podWorker) env(pod *corev1.Pod, c corev1.Container) (map[string]string, []string, error) {
	env := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	host, port := w.k.cfg.apiHost, w.k.cfg.apiPort
	set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	set("HOSTNAME", pod.Name)
	set("HOME", "/")
	set("KUBERNETES_SERVICE_HOST", host)
	set("KUBERNETES_SERVICE_PORT", port)
	set("KUBERNETES_SERVICE_PORT_HTTPS", port)
	set("KUBERNETES_PORT", fmt.Sprintf("tcp://%s:%s", host, port))
	set(fmt.Sprintf("KUBERNETES_PORT_%s_TCP", port), fmt.Sprintf("tcp://%s:%s", host, port))
	ctx := context.Background()
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := w.k.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional && apierrors.IsNotFound(err) {
					continue
				}
				return nil, nil, err
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := w.k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if from.SecretRef.Optional != nil && *from.SecretRef.Optional && apierrors.IsNotFound(err) {
					continue
				}
				return nil, nil, err
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		for _, k := range sortedKeys(data) {
			set(from.Prefix+k, data[k])
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, env))
			continue
		}
		v, err := w.valueFrom(ctx, pod, e.ValueFrom)
		if err != nil {
			return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		set(e.Name, v)
	}
	return env, order, nil
}

func (w *podWorker) valueFrom(ctx context.Context, pod *corev1.Pod, from *corev1.EnvVarSource) (string, error) {
	switch {
	case from.FieldRef != nil:
		return w.field(pod, from.FieldRef.FieldPath)
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		s, err := w.k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err == nil {
			if v, ok := s.Data[ref.Key]; ok {
				return string(v), nil
			}
			err = fmt.Errorf("secret %s has no key %s", ref.Name, ref.Key)
		}
		if ref.Optional != nil && *ref.Optional {
			return "", nil
		}
		return "", err
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		cm, err := w.k.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err == nil {
			if v, ok := cm.Data[ref.Key]; ok {
				return v, nil
			}
			err = fmt.Errorf("configmap %s has no key %s", ref.Name, ref.Key)
		}
		if ref.Optional != nil && *ref.Optional {
			return "", nil
		}
		return "", err
	}
	return "", fmt.Errorf("unsupported valueFrom (resourceFieldRef and fileKeyRef are not served here)")
}

// field answers a downward API fieldPath.
func (w *podWorker) field(pod *corev1.Pod, path string) (string, error) {
	if k, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return pod.Labels[strings.TrimSuffix(k, "']")], nil
	}
	if k, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return pod.Annotations[strings.TrimSuffix(k, "']")], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return w.addr.API.String(), nil
	case "status.hostIP", "status.hostIPs":
		return w.hostIP(), nil
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

func (w *podWorker) hostIP() string {
	for i, n := range w.k.cfg.nodes {
		if n.name == w.pod.Spec.NodeName {
			return fmt.Sprintf("192.0.2.%d", i+10)
		}
	}
	return ""
}

func atoiOr(s string, d int) int {
	if v, err := strconv.Atoi(s); err == nil {
		return v
	}
	return d
}
