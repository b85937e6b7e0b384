package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// program is what an image means on this machine: a local executable
// (the image's entrypoint).
type program struct {
	Entrypoint []string `json:"entrypoint"`
}

func loadImages(path string) (map[string]program, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var images map[string]program
	if err := json.Unmarshal(data, &images); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for repo, p := range images {
		if len(p.Entrypoint) == 0 {
			return nil, fmt.Errorf("%s: image %s has no entrypoint", path, repo)
		}
		if _, err := os.Stat(p.Entrypoint[0]); err != nil {
			return nil, fmt.Errorf("%s: image %s: %w", path, repo, err)
		}
	}
	return images, nil
}

// repository strips the tag and digest of an image reference.
func repository(image string) string {
	if at := strings.IndexByte(image, '@'); at >= 0 {
		image = image[:at]
	}
	if colon := strings.LastIndexByte(image, ':'); colon > strings.LastIndexByte(image, '/') {
		image = image[:colon]
	}
	return image
}

type kubelet struct {
	client  kubernetes.Interface
	cfg     config
	network *podNetwork

	imagesMu    sync.Mutex
	images      map[string]program
	imagesMtime time.Time

	nodes map[string]nodeSpec
	order []string

	mu       sync.Mutex
	workers  map[types.UID]*podWorker
	finished map[types.UID]bool
	next     int
	wg       sync.WaitGroup
}

func newKubelet(client kubernetes.Interface, cfg config, network *podNetwork) *kubelet {
	k := &kubelet{client: client, cfg: cfg, network: network,
		nodes: map[string]nodeSpec{}, workers: map[types.UID]*podWorker{}, finished: map[types.UID]bool{}}
	for _, n := range cfg.nodes {
		k.nodes[n.name] = n
		k.order = append(k.order, n.name)
	}
	return k
}

// program is the local program of an image, from --images (re-read when
// the file changes, so `cluster.sh install` can add imagegate's).
func (k *kubelet) program(image string) (program, bool) {
	k.imagesMu.Lock()
	defer k.imagesMu.Unlock()
	if info, err := os.Stat(k.cfg.imagesFile); err == nil && !info.ModTime().Equal(k.imagesMtime) {
		if images, err := loadImages(k.cfg.imagesFile); err == nil {
			k.images, k.imagesMtime = images, info.ModTime()
		} else {
			klog.Warningf("%v", err)
		}
	}
	p, ok := k.images[repository(image)]
	return p, ok
}

// runnable says whether every image of the pod is a local program.
func (k *kubelet) runnable(pod *corev1.Pod) bool {
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if _, ok := k.program(c.Image); !ok {
			return false
		}
	}
	return len(pod.Spec.EphemeralContainers) == 0 && len(pod.Spec.Containers) > 0
}

func (k *kubelet) run(ctx context.Context) {
	factory := informers.NewSharedInformerFactory(k.client, 0)
	informer := factory.Core().V1().Pods().Informer()
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.onPod(ctx, obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) { k.onPod(ctx, obj.(*corev1.Pod)) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				k.onDelete(pod)
			}
		},
	})
	factory.Start(ctx.Done())
	<-ctx.Done()
	// Stopping the node: every container gets SIGTERM, then SIGKILL. The
	// API is not told (the control plane is going away with us).
	k.mu.Lock()
	for _, w := range k.workers {
		w.shutdown()
	}
	k.mu.Unlock()
	k.wg.Wait()
}

func (k *kubelet) onPod(ctx context.Context, pod *corev1.Pod) {
	if pod.Spec.NodeName == "" {
		if pod.DeletionTimestamp == nil && k.runnable(pod) {
			go k.bind(ctx, pod)
		}
		return
	}
	if _, ours := k.nodes[pod.Spec.NodeName]; !ours {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if w, ok := k.workers[pod.UID]; ok {
		w.update(pod)
		return
	}
	if k.finished[pod.UID] {
		return
	}
	if !k.runnable(pod) {
		// Bound here by someone else with an image we cannot run: a
		// kubelet that cannot pull it would leave it waiting; finish its
		// deletion as a kubelet does, so namespaces can go away.
		if pod.DeletionTimestamp != nil {
			go k.finalizeDeletion(ctx, pod)
		}
		return
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		if pod.DeletionTimestamp != nil {
			go k.finalizeDeletion(ctx, pod)
		}
		return
	}
	w := newPodWorker(k, pod)
	k.workers[pod.UID] = w
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		w.run(ctx)
		k.mu.Lock()
		delete(k.workers, pod.UID)
		k.finished[pod.UID] = true
		k.mu.Unlock()
	}()
}

func (k *kubelet) onDelete(pod *corev1.Pod) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if w, ok := k.workers[pod.UID]; ok {
		w.deleted()
	}
}

// bind plays the scheduler for the pods this node runs: the first of our
// nodes (round robin) whose labels satisfy the pod's nodeSelector.
func (k *kubelet) bind(ctx context.Context, pod *corev1.Pod) {
	selector := labels.SelectorFromSet(pod.Spec.NodeSelector)
	k.mu.Lock()
	var node string
	for i := range k.order {
		name := k.order[(k.next+i)%len(k.order)]
		n := k.nodes[name]
		nodeLabels := labels.Set{"kubernetes.io/hostname": n.name, "kubernetes.io/os": n.os,
			"kubernetes.io/arch": n.arch, "topology.kubernetes.io/zone": n.zone}
		if selector.Matches(nodeLabels) {
			node = name
			k.next = (k.next + i + 1) % len(k.order)
			break
		}
	}
	k.mu.Unlock()
	if node == "" {
		klog.Warningf("pod %s/%s: no node matches its nodeSelector", pod.Namespace, pod.Name)
		return
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}
	err := k.client.CoreV1().Pods(pod.Namespace).Bind(ctx, binding, metav1.CreateOptions{})
	if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		klog.Warningf("binding %s/%s to %s: %v", pod.Namespace, pod.Name, node, err)
	}
}

// finalizeDeletion removes a terminating pod that runs nothing here.
func (k *kubelet) finalizeDeletion(ctx context.Context, pod *corev1.Pod) {
	zero := int64(0)
	uid := pod.UID
	err := k.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		klog.Warningf("finishing deletion of %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

// writeJSON writes v to path atomically (temp file and rename).
func writeJSON(path string, v any) {
	data, _ := json.MarshalIndent(v, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err == nil {
		_ = os.Rename(tmp, path)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// backoff is the restart delay after n failures: 1 s doubling to 20 s (a
// kubelet goes to 5 minutes; the tests restart processes on purpose).
func backoff(n int) time.Duration {
	d := time.Second
	for i := 0; i < n && d < 20*time.Second; i++ {
		d *= 2
	}
	return min(d, 20*time.Second)
}
