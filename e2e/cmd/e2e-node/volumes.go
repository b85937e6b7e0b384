package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// volumeSet is a pod's volumes, each a directory under dir that the
// containers get bind-mounted at their mountPaths.
type volumeSet struct {
	w          *podWorker
	dir        string
	stopTokens context.CancelFunc
	wg         sync.WaitGroup
}

func newVolumes(w *podWorker, dir string) *volumeSet {
	return &volumeSet{w: w, dir: dir, stopTokens: func() {}}
}

func (v *volumeSet) stop() {
	v.stopTokens()
	v.wg.Wait()
}

// file is one file of a secret, configMap, projected or downwardAPI volume.
type file struct {
	path string
	data []byte
	mode os.FileMode
}

// tokenSource is a projected ServiceAccount token kept fresh.
type tokenSource struct {
	path     string
	audience string
	seconds  int64
	mode     os.FileMode
}

// prepare writes every volume of the pod; it fails (and is retried) while
// a Secret or ConfigMap a volume needs does not exist, as the kubelet
// waits in ContainerCreating.
func (v *volumeSet) prepare(ctx context.Context) error {
	pod := v.w.snapshot()
	var tokens []struct {
		dir string
		src tokenSource
	}
	for _, vol := range pod.Spec.Volumes {
		dir := filepath.Join(v.dir, vol.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		var files []file
		var err error
		switch {
		case vol.EmptyDir != nil:
			// World-writable like the kubelet's emptyDir.
			err = os.Chmod(dir, 0o1777)
		case vol.Secret != nil:
			files, err = v.secretFiles(ctx, pod, vol.Secret.SecretName, vol.Secret.Items, vol.Secret.Optional, mode(vol.Secret.DefaultMode, 0o644))
		case vol.ConfigMap != nil:
			files, err = v.configMapFiles(ctx, pod, vol.ConfigMap.Name, vol.ConfigMap.Items, vol.ConfigMap.Optional, mode(vol.ConfigMap.DefaultMode, 0o644))
		case vol.DownwardAPI != nil:
			files, err = v.downwardFiles(pod, vol.DownwardAPI.Items, mode(vol.DownwardAPI.DefaultMode, 0o644))
		case vol.Projected != nil:
			defMode := mode(vol.Projected.DefaultMode, 0o644)
			for _, src := range vol.Projected.Sources {
				var more []file
				switch {
				case src.ServiceAccountToken != nil:
					t := src.ServiceAccountToken
					secs := int64(3600)
					if t.ExpirationSeconds != nil {
						secs = *t.ExpirationSeconds
					}
					tokens = append(tokens, struct {
						dir string
						src tokenSource
					}{dir, tokenSource{path: t.Path, audience: t.Audience, seconds: secs, mode: defMode}})
				case src.Secret != nil:
					more, err = v.secretFiles(ctx, pod, src.Secret.Name, src.Secret.Items, src.Secret.Optional, defMode)
				case src.ConfigMap != nil:
					more, err = v.configMapFiles(ctx, pod, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, defMode)
				case src.DownwardAPI != nil:
					more, err = v.downwardFiles(pod, src.DownwardAPI.Items, defMode)
				default:
					err = fmt.Errorf("projected source of volume %s is not served here", vol.Name)
				}
				if err != nil {
					break
				}
				files = append(files, more...)
			}
		default:
			err = fmt.Errorf("volume %s: only emptyDir, secret, configMap, downwardAPI and projected volumes are served here", vol.Name)
		}
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := writeFile(filepath.Join(dir, f.path), f.data, f.mode, fsGroup(pod)); err != nil {
				return err
			}
		}
	}
	// Tokens last: they are the only volume content that changes later.
	tokenCtx, cancel := context.WithCancel(ctx)
	for _, t := range tokens {
		expiry, err := v.writeToken(ctx, pod, t.dir, t.src)
		if err != nil {
			cancel()
			return err
		}
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			v.refreshToken(tokenCtx, pod, t.dir, t.src, expiry)
		}()
	}
	v.stopTokens = cancel
	return nil
}

func fsGroup(pod *corev1.Pod) int {
	if sc := pod.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		return int(*sc.FSGroup)
	}
	return -1
}

func mode(m *int32, def os.FileMode) os.FileMode {
	if m == nil {
		return def
	}
	return os.FileMode(*m)
}

// writeFile replaces path atomically, so a reader never sees half a file.
func writeFile(path string, data []byte, perm os.FileMode, group int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".e2e-tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	if group >= 0 {
		_ = os.Chown(tmp, -1, group)
	}
	return os.Rename(tmp, path)
}

func (v *volumeSet) secretFiles(ctx context.Context, pod *corev1.Pod, name string, items []corev1.KeyToPath, optional *bool, m os.FileMode) ([]file, error) {
	s, err := v.w.k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return nil, nil
		}
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	return keyFiles(s.Data, items, m, "secret "+name)
}

func (v *volumeSet) configMapFiles(ctx context.Context, pod *corev1.Pod, name string, items []corev1.KeyToPath, optional *bool, m os.FileMode) ([]file, error) {
	cm, err := v.w.k.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return nil, nil
		}
		return nil, fmt.Errorf("configmap %q: %w", name, err)
	}
	data := map[string][]byte{}
	for k, val := range cm.Data {
		data[k] = []byte(val)
	}
	for k, val := range cm.BinaryData {
		data[k] = val
	}
	return keyFiles(data, items, m, "configmap "+name)
}

func keyFiles(data map[string][]byte, items []corev1.KeyToPath, m os.FileMode, what string) ([]file, error) {
	var files []file
	if len(items) == 0 {
		for _, k := range sortedKeys(data) {
			files = append(files, file{path: k, data: data[k], mode: m})
		}
		return files, nil
	}
	for _, it := range items {
		d, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("%s has no key %q", what, it.Key)
		}
		fm := m
		if it.Mode != nil {
			fm = os.FileMode(*it.Mode)
		}
		files = append(files, file{path: it.Path, data: d, mode: fm})
	}
	return files, nil
}

func (v *volumeSet) downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, m os.FileMode) ([]file, error) {
	var files []file
	for _, it := range items {
		if it.FieldRef == nil {
			return nil, fmt.Errorf("downward API file %s: only fieldRef is served here", it.Path)
		}
		val, err := v.w.field(pod, it.FieldRef.FieldPath)
		if err != nil {
			return nil, err
		}
		fm := m
		if it.Mode != nil {
			fm = os.FileMode(*it.Mode)
		}
		files = append(files, file{path: it.Path, data: []byte(val), mode: fm})
	}
	return files, nil
}

// writeToken asks the TokenRequest API for a token bound to the pod, as
// the kubelet does for a projected serviceAccountToken source.
func (v *volumeSet) writeToken(ctx context.Context, pod *corev1.Pod, dir string, src tokenSource) (time.Time, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	secs := src.seconds
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &secs,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.audience != "" {
		req.Spec.Audiences = []string{src.audience}
	}
	resp, err := v.w.k.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("token for serviceaccount %s: %w", sa, err)
	}
	if err := writeFile(filepath.Join(dir, src.path), []byte(resp.Status.Token), src.mode, fsGroup(pod)); err != nil {
		return time.Time{}, err
	}
	return resp.Status.ExpirationTimestamp.Time, nil
}

// refreshToken renews the token at 80% of its lifetime (the kubelet's rule).
func (v *volumeSet) refreshToken(ctx context.Context, pod *corev1.Pod, dir string, src tokenSource, expiry time.Time) {
	for {
		life := time.Until(expiry)
		wait := life * 8 / 10
		if wait < time.Second {
			wait = time.Second
		}
		if !sleepCtx(ctx, wait) {
			return
		}
		next, err := v.writeToken(ctx, pod, dir, src)
		if err != nil {
			if ctx.Err() == nil {
				klog.Warningf("refreshing token of %s/%s: %v", pod.Namespace, pod.Name, err)
			}
			expiry = time.Now().Add(10 * time.Second)
			continue
		}
		expiry = next
	}
}

// mounts lists the container's bind mounts: volume directories (or one
// file of one, for subPath) at their mountPaths.
func (v *volumeSet) mounts(c corev1.Container) ([]mountSpec, error) {
	var out []mountSpec
	for _, m := range c.VolumeMounts {
		src := filepath.Join(v.dir, m.Name)
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("volume mount %s: no volume %q", m.MountPath, m.Name)
		}
		if m.SubPath != "" {
			if strings.Contains(m.SubPath, "..") {
				return nil, fmt.Errorf("volume mount %s: subPath %q", m.MountPath, m.SubPath)
			}
			src = filepath.Join(src, m.SubPath)
		}
		out = append(out, mountSpec{Source: src, Target: m.MountPath, ReadOnly: m.ReadOnly})
	}
	return out, nil
}
