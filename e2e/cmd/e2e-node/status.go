package main

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// statusLoop writes the pod's status whenever it changes (coalesced).
func (w *podWorker) statusLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.changed:
		}
		for attempt := 0; ; attempt++ {
			err := w.writeStatus(ctx)
			if err == nil || apierrors.IsNotFound(err) || ctx.Err() != nil {
				break
			}
			klog.Warningf("pod %s status: %v", w.dir, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff(attempt) / 2):
			}
		}
	}
}

// writeStatus computes the pod's status from the containers' states and
// writes it to the status subresource.
func (w *podWorker) writeStatus(ctx context.Context) error {
	w.mu.Lock()
	pod := w.pod.DeepCopy()
	phase, message := w.phase, w.message
	var inits, conts []corev1.ContainerStatus
	allReady, anyRunning := len(pod.Spec.Containers) > 0, false
	for _, c := range pod.Spec.InitContainers {
		inits = append(inits, *w.statuses[c.Name].DeepCopy())
	}
	for _, c := range pod.Spec.Containers {
		st := w.statuses[c.Name].DeepCopy()
		conts = append(conts, *st)
		allReady = allReady && st.Ready
		anyRunning = anyRunning || st.State.Running != nil
	}
	initDone, volsReady, addr := w.initDone, w.volsReady, w.addr
	w.mu.Unlock()

	if phase == corev1.PodPending && initDone && anyRunning {
		phase = corev1.PodRunning
	}
	if phase == corev1.PodPending && initDone && !anyRunning {
		// Containers between restarts still make a Running pod.
		for _, st := range conts {
			if st.RestartCount > 0 {
				phase = corev1.PodRunning
			}
		}
	}
	now := metav1.Now()
	cond := func(t corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s, reason = corev1.ConditionTrue, ""
		}
		return corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: now}
	}
	terminal := phase == corev1.PodSucceeded || phase == corev1.PodFailed
	ready := allReady && !terminal
	conditions := []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, volsReady && !terminal, ""),
		cond(corev1.PodInitialized, initDone, "ContainersNotInitialized"),
		cond(corev1.ContainersReady, ready, "ContainersNotReady"),
		cond(corev1.PodReady, ready, "ContainersNotReady"),
		cond(corev1.PodScheduled, true, ""),
	}
	status := pod.Status.DeepCopy()
	// Keep transition times of conditions that did not change.
	for i, c := range conditions {
		for _, old := range status.Conditions {
			if old.Type == c.Type && old.Status == c.Status {
				conditions[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	status.Conditions = conditions
	status.Phase = phase
	status.Message = message
	status.PodIP = addr.API.String()
	status.PodIPs = []corev1.PodIP{{IP: addr.API.String()}}
	status.HostIP = w.hostIP()
	status.HostIPs = []corev1.HostIP{{IP: status.HostIP}}
	if status.StartTime == nil {
		status.StartTime = &now
	}
	status.InitContainerStatuses = inits
	status.ContainerStatuses = conts
	status.QOSClass = qos(pod)
	pod.Status = *status
	_, err := w.k.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		fresh, gerr := w.k.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		if fresh.UID != pod.UID {
			return nil
		}
		w.mu.Lock()
		w.pod = fresh
		w.mu.Unlock()
		return w.writeStatus(ctx)
	}
	return err
}

// qos is the pod's QoS class (the API refuses to change it once set).
func qos(pod *corev1.Pod) corev1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	any := false
	guaranteed := true
	for _, c := range pod.Spec.Containers {
		if len(c.Resources.Requests) > 0 || len(c.Resources.Limits) > 0 {
			any = true
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			l, hasLimit := c.Resources.Limits[r]
			q, hasReq := c.Resources.Requests[r]
			if !hasLimit || (hasReq && q.Cmp(l) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}
