// Package containerapi is what the runtime needs of GreengrassContainer
// isolation, without linking containerd: the container's settings and
// the runner's interface. Package container implements it with the
// containerd client, in the ggd-containerd helper binary; package
// container/remote is the runtime's client of that helper. Go runs every
// linked package's init in every process of the multi-call ggd, and
// containerd's costs each daemon about 1.2 MB; this split keeps it in the
// one process that needs it.
package containerapi

import (
	"context"
	"io"
	"syscall"
)

// Mount is a host path bound into the container (LocalVolumeResourceData).
type Mount struct {
	Source, Dest string
	ReadOnly     bool
}

// Device is a host device node made reachable in the container at the same
// path (LocalDeviceResourceData).
type Device struct {
	Path     string
	ReadOnly bool
}

// Spec is one container process.
type Spec struct {
	// ID is the container's id, unique in the namespace (the worker id).
	ID string
	// Argv is the command line; Argv[0] without a slash is looked up in
	// Env's PATH (a default PATH is added when Env has none).
	Argv []string
	Env  []string
	// Cwd is the working directory inside the container ("/" when empty).
	Cwd string
	// ReadOnlyBinds are host paths bound read-only at the same path: the
	// function's code and the language shims (needed under /tmp, which is
	// private; elsewhere they are visible anyway, read-only).
	ReadOnlyBinds []string
	// UID and GID are the RunAs identity; Groups the supplementary groups
	// (GroupOwnerSetting of the function's resources). Nothing else.
	UID, GID int
	Groups   []int
	// MemoryKB is MemorySize: memory and memory+swap limit; 0 = none.
	MemoryKB int
	// AccessSysfs mounts /sys read-only; without it /sys is empty.
	AccessSysfs bool
	// Volumes are the LocalVolumeResourceData of the function.
	Volumes []Mount
	// Devices are the LocalDeviceResourceData of the function: each gets
	// a device cgroup rule and a bind mount.
	Devices []Device
	// Stdout and Stderr receive the process's output; nil = discarded.
	// Through the helper they must be the same *os.File (its descriptor is
	// passed to the helper).
	Stdout, Stderr io.Writer `json:"-"`
}

// Runner starts container processes.
type Runner interface {
	Start(ctx context.Context, s Spec) (Process, error)
	Close() error
}

// Process is one running container.
type Process interface {
	// Pid is the host pid of the container's first process.
	Pid() int
	// Signal sends sig to every process of the container.
	Signal(sig syscall.Signal) error
	// Wait blocks until the process exits and the container is removed;
	// exitCode is 128+signal for a killed process, oomKilled says the
	// kernel killed it at its memory limit.
	Wait() (exitCode int, oomKilled bool, err error)
}
