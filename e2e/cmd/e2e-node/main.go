// Command e2e-node stands in for the kubelets and the pod network of the
// test control plane that scripts/cluster.sh starts on loopback. It is test
// infrastructure: nothing of imagegate is written in Go.
//
// What it does, as a kubelet and a CNI plugin would:
//   - registers the Node objects given by --node (labels, os/arch in
//     status.nodeInfo, Ready), so node platforms and DaemonSets are real;
//   - binds and runs the pods whose every image is a local program (see
//     --images): imagegate's own Deployment and the chart's hook Jobs. Each
//     container is a process in a mount namespace of its own, with the pod's
//     volumes (emptyDir, secret, configMap, projected ServiceAccount tokens
//     from the TokenRequest API, downward API) bind-mounted at their paths,
//     its env (fieldRef, secretKeyRef, configMapKeyRef, the
//     KUBERNETES_SERVICE_* variables), its user and group; startup,
//     readiness and liveness probes; restarts by restartPolicy; graceful
//     termination; the pod's status (phase, podIP, conditions, container
//     states) written back, so the real endpointslice controller publishes
//     the pod and the real Deployment and Job controllers see it progress;
//   - serves the pod network: every pod gets an API address from
//     --pod-cidr (what EndpointSlices carry; the API rejects loopback
//     addresses there) and a host address on a loopback /24 of its own;
//     kube-apiserver's egress selector sends its "cluster" traffic (webhook
//     calls) as HTTP CONNECT requests to --egress-socket, and they are
//     forwarded from the pod's API address to its host address. No packet
//     leaves 127.0.0.0/8.
//
// Pods with any other image (the workloads whose admission is under test)
// are left alone: they stay Pending, as without a scheduler.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == containerInitArg {
		// Re-executed inside a container's new mount namespace.
		containerInit(os.Args[2:])
		return
	}
	var cfg config
	var nodes nodeList
	flag.StringVar(&cfg.kubeconfig, "kubeconfig", "", "admin kubeconfig of the control plane")
	flag.StringVar(&cfg.dir, "dir", "", "state directory (pod volumes, logs)")
	flag.StringVar(&cfg.imagesFile, "images", "", "JSON file: image repository -> entrypoint argv of the local program")
	flag.StringVar(&cfg.egressSocket, "egress-socket", "", "Unix socket for kube-apiserver's HTTPConnect egress")
	flag.StringVar(&cfg.podCIDR, "pod-cidr", "10.244.0.0/16", "pod API addresses (never dialled)")
	flag.StringVar(&cfg.apiHost, "apiserver-host", "127.0.0.1", "KUBERNETES_SERVICE_HOST of the pods")
	flag.StringVar(&cfg.apiPort, "apiserver-port", "", "KUBERNETES_SERVICE_PORT of the pods")
	flag.Var(&nodes, "node", "NAME=OS/ARCH[/VARIANT][,zone=ZONE] (repeatable)")
	klog.InitFlags(nil)
	flag.Parse()
	cfg.nodes = nodes
	if cfg.kubeconfig == "" || cfg.dir == "" || cfg.imagesFile == "" || cfg.egressSocket == "" || cfg.apiPort == "" || len(cfg.nodes) == 0 {
		fmt.Fprintln(os.Stderr, "e2e-node: --kubeconfig, --dir, --images, --egress-socket, --apiserver-port and --node are required")
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "e2e-node: %v\n", err)
		os.Exit(1)
	}
}

type config struct {
	kubeconfig, dir, imagesFile, egressSocket, podCIDR, apiHost, apiPort string
	nodes                                                                []nodeSpec
}

func run(cfg config) error {
	if _, err := loadImages(cfg.imagesFile); err != nil {
		return err
	}
	rest, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	if err != nil {
		return err
	}
	rest.UserAgent = "e2e-node"
	rest.QPS, rest.Burst = 50, 100
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	network, err := newPodNetwork(cfg.podCIDR, cfg.dir)
	if err != nil {
		return err
	}
	defer network.close()
	if err := network.serveEgress(ctx, cfg.egressSocket); err != nil {
		return err
	}
	if err := registerNodes(ctx, client, cfg.nodes); err != nil {
		return err
	}
	kubelet := newKubelet(client, cfg, network)
	klog.Infof("serving nodes %s, pod host addresses %s.0/24", nodeNames(cfg.nodes), network.hostPrefix)
	kubelet.run(ctx)
	return nil
}

func nodeNames(nodes []nodeSpec) string {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.name
	}
	return strings.Join(names, ",")
}
