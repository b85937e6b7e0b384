package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// containerInitArg re-executes e2e-node as a container's first process,
// already in a mount namespace of its own (CLONE_NEWNS).
const containerInitArg = "__container-init"

type mountSpec struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly"`
}

// initSpec is what containerInit does before it becomes the container.
type initSpec struct {
	Argv    []string    `json:"argv"`
	Mounts  []mountSpec `json:"mounts"`
	UID     int         `json:"uid"`
	GID     int         `json:"gid"`
	Groups  []int       `json:"groups"`
	WorkDir string      `json:"workDir"`
}

// containerInit mounts the pod's volumes at their paths (visible to this
// process only), drops to the container's user and group, and executes the
// container's program. The program is opened before the mounts, so a
// volume mounted over the directory it lives in (an emptyDir at /tmp)
// cannot hide it.
func containerInit(args []string) {
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "e2e-node: container init: "+format+"\n", a...)
		os.Exit(127)
	}
	if len(args) != 1 {
		fail("want one spec file")
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		fail("%v", err)
	}
	var spec initSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		fail("%v", err)
	}
	fd, err := syscall.Open(spec.Argv[0], syscall.O_RDONLY, 0)
	if err != nil {
		fail("opening %s: %v", spec.Argv[0], err)
	}
	// Every source is opened before the first mount: a volume mounted
	// over a directory (an emptyDir at /tmp) must not hide the sources of
	// the mounts after it (this state directory may live under /tmp).
	sources := make([]string, len(spec.Mounts))
	for i, m := range spec.Mounts {
		sfd, err := syscall.Open(m.Source, unix.O_PATH, 0)
		if err != nil {
			fail("opening %s: %v", m.Source, err)
		}
		sources[i] = fmt.Sprintf("/proc/self/fd/%d", sfd)
	}
	// Nothing mounted here may reach the host's mount table.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		fail("making mounts private: %v", err)
	}
	for i, m := range spec.Mounts {
		info, err := os.Stat(sources[i])
		if err != nil {
			fail("%v", err)
		}
		// A missing mount point is made on the host, empty, as a container
		// runtime makes it in the image's filesystem.
		if info.IsDir() {
			err = os.MkdirAll(m.Target, 0o755)
		} else if _, serr := os.Stat(m.Target); serr != nil {
			if err = os.MkdirAll(filepath.Dir(m.Target), 0o755); err == nil {
				var f *os.File
				if f, err = os.OpenFile(m.Target, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
					f.Close()
				}
			}
		}
		if err != nil {
			fail("mount point %s: %v", m.Target, err)
		}
		if err := syscall.Mount(sources[i], m.Target, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			fail("mounting %s at %s: %v", m.Source, m.Target, err)
		}
		if m.ReadOnly {
			if err := syscall.Mount("", m.Target, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
				fail("read-only %s: %v", m.Target, err)
			}
		}
	}
	if err := os.Chdir(spec.WorkDir); err != nil {
		fail("working directory %s: %v", spec.WorkDir, err)
	}
	if err := syscall.Setgroups(spec.Groups); err != nil {
		fail("setgroups: %v", err)
	}
	if err := syscall.Setgid(spec.GID); err != nil {
		fail("setgid %d: %v", spec.GID, err)
	}
	if err := syscall.Setuid(spec.UID); err != nil {
		fail("setuid %d: %v", spec.UID, err)
	}
	path := fmt.Sprintf("/proc/self/fd/%d", fd)
	if err := syscall.Exec(path, spec.Argv, os.Environ()); err != nil {
		fail("exec %s: %v", spec.Argv[0], err)
	}
}
