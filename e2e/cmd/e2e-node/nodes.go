package main

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// nodeSpec is one --node flag: a Node object this process serves.
type nodeSpec struct {
	name, os, arch, variant, zone string
}

type nodeList []nodeSpec

func (l *nodeList) String() string { return fmt.Sprint(*l) }

// Set parses NAME=OS/ARCH[/VARIANT][,zone=ZONE].
func (l *nodeList) Set(v string) error {
	name, rest, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("--node %q: want NAME=OS/ARCH[/VARIANT][,zone=ZONE]", v)
	}
	platform, opts, _ := strings.Cut(rest, ",")
	parts := strings.Split(platform, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return fmt.Errorf("--node %q: platform must be OS/ARCH[/VARIANT]", v)
	}
	n := nodeSpec{name: name, os: parts[0], arch: parts[1], zone: "zone-a"}
	if len(parts) == 3 {
		n.variant = parts[2]
	}
	if opts != "" {
		z, ok := strings.CutPrefix(opts, "zone=")
		if !ok {
			return fmt.Errorf("--node %q: unknown option %q", v, opts)
		}
		n.zone = z
	}
	*l = append(*l, n)
	return nil
}

// registerNodes creates (or refreshes) the Node objects and marks them
// Ready, as a kubelet does when it registers. The node lifecycle
// controller is not run, so no heartbeat is needed to keep them Ready.
func registerNodes(ctx context.Context, client kubernetes.Interface, nodes []nodeSpec) error {
	for i, n := range nodes {
		labels := map[string]string{
			"kubernetes.io/hostname":           n.name,
			"kubernetes.io/os":                 n.os,
			"kubernetes.io/arch":               n.arch,
			"topology.kubernetes.io/zone":      n.zone,
			"node.kubernetes.io/instance-type": "e2e",
		}
		if n.variant != "" {
			// What some distributions label; the kubelet reports no variant.
			labels["kubernetes.io/arch-variant"] = n.variant
		}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: labels}}
		created, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			created, err = client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if err == nil {
				for k, v := range labels {
					if created.Labels == nil {
						created.Labels = map[string]string{}
					}
					created.Labels[k] = v
				}
				created, err = client.CoreV1().Nodes().Update(ctx, created, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("registering node %s: %w", n.name, err)
		}
		now := metav1.Now()
		created.Status = corev1.NodeStatus{
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("8"),
				corev1.ResourceMemory: resource.MustParse("32Gi"),
				corev1.ResourcePods:   resource.MustParse("250"),
			},
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("8"),
				corev1.ResourceMemory: resource.MustParse("32Gi"),
				corev1.ResourcePods:   resource.MustParse("250"),
			},
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue,
				Reason: "KubeletReady", Message: "e2e-node is serving this node",
				LastHeartbeatTime: now, LastTransitionTime: now,
			}},
			// Documentation addresses (RFC 5737): never dialled; the API
			// rejects loopback node addresses.
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("192.0.2.%d", i+10)},
				{Type: corev1.NodeHostName, Address: n.name},
			},
			NodeInfo: corev1.NodeSystemInfo{
				OperatingSystem:         n.os,
				Architecture:            n.arch,
				KubeletVersion:          "v1.37.2",
				ContainerRuntimeVersion: "e2e-node://1",
				OSImage:                 "e2e-node",
				KernelVersion:           "e2e",
			},
		}
		updated, err := client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("node %s status: %w", n.name, err)
		}
		// The TaintNodesByCondition admission plugin taints a new node
		// not-ready; the node lifecycle controller (not run here) lifts the
		// taint once the node reports Ready. Lift it as it would.
		var taints []corev1.Taint
		for _, t := range updated.Spec.Taints {
			if t.Key != corev1.TaintNodeNotReady {
				taints = append(taints, t)
			}
		}
		if len(taints) != len(updated.Spec.Taints) {
			updated.Spec.Taints = taints
			if _, err := client.CoreV1().Nodes().Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("node %s taints: %w", n.name, err)
			}
		}
	}
	return nil
}
