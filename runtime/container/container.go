// Package container runs the processes of GreengrassContainer functions
// (v1 IsolationMode GreengrassContainer) through containerd and runc: no
// image and no snapshot, the host's root read-only as the container's
// root, the host network, private pid/ipc/uts/mount namespaces, a memory
// cgroup and only the function's resources writable or reachable.
package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/evergreen-edge/evergreen/runtime/containerapi"
)

// Defaults of Options.
const (
	DefaultAddress   = "/run/containerd/containerd.sock"
	DefaultNamespace = "evergreen"
	DefaultRootDir   = "/run/evergreen/container-root"
)

// OwnerLabel is the containerd label naming the Runner's Options.Owner.
const OwnerLabel = "io.evergreen.owner"

// runtimeName is containerd's runc shim; named so that creating a
// container needs no look-up of the namespace's default runtime.
const runtimeName = "io.containerd.runc.v2"

// Options configure a Runner. Zero values take the defaults noted.
type Options struct {
	// Address is containerd's socket (DefaultAddress).
	Address string
	// Namespace is the containerd namespace of every container
	// (DefaultNamespace).
	Namespace string
	// Owner marks every container this Runner creates (label OwnerLabel,
	// the runtime passes its DIR): Cleanup removes only containers of
	// this owner, and unmarked ones an older release left, so two cores
	// sharing one containerd never remove each other's containers.
	Owner string
	// RootDir is the container's root directory: mount points and the
	// host root's top-level symlinks, nothing else (DefaultRootDir).
	RootDir string
	Log     *slog.Logger
}

// The settings are package containerapi's, shared with the runtime.
type (
	Mount  = containerapi.Mount
	Device = containerapi.Device
	Spec   = containerapi.Spec
)

// Runner starts containers in one containerd namespace.
type Runner struct {
	client *client.Client
	addr   string
	ns     string
	owner  string
	root   string
	log    *slog.Logger
	cg     cgroupLayout

	ctx    context.Context // ends at Close: event subscription, waits
	cancel context.CancelFunc
	events sync.WaitGroup

	rootMu sync.Mutex // serialises syncRoot

	mu   sync.Mutex
	ooms map[string]chan struct{} // container id -> closed on its /tasks/oom event
}

// New connects to containerd at o.Address. It fails with an error naming
// the socket when containerd does not answer.
func New(ctx context.Context, o Options) (*Runner, error) {
	if o.Address == "" {
		o.Address = DefaultAddress
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.RootDir == "" {
		o.RootDir = DefaultRootDir
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if _, err := os.Stat(o.Address); err != nil {
		return nil, fmt.Errorf("containerd socket %s: %w", o.Address, err)
	}
	c, err := client.New(o.Address, client.WithDefaultNamespace(o.Namespace))
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: %w", o.Address, err)
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	v, err := c.Version(vctx)
	cancel()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("containerd at %s does not answer: %w", o.Address, err)
	}
	r := &Runner{
		client: c,
		addr:   o.Address,
		ns:     o.Namespace,
		owner:  o.Owner,
		root:   o.RootDir,
		log:    o.Log.With("component", "container"),
		cg:     detectCgroups(),
		ooms:   map[string]chan struct{}{},
	}
	r.ctx, r.cancel = context.WithCancel(namespaces.WithNamespace(context.Background(), r.ns))
	r.log.Info("containerd connected", "address", o.Address, "version", v.Version, "namespace", r.ns, "cgroup", r.cg.String())
	r.events.Add(1)
	go r.watchOOM()
	return r, nil
}

// Close stops watching containerd and closes the connection. Running
// containers keep running (Cleanup of the next Runner removes them); Wait
// of a process still running returns an error.
func (r *Runner) Close() error {
	r.cancel()
	r.events.Wait()
	return r.client.Close()
}

// watchOOM records containerd's /tasks/oom events of the namespace until
// Close, subscribing again when the stream breaks (containerd restarted).
func (r *Runner) watchOOM() {
	defer r.events.Done()
	for r.ctx.Err() == nil {
		ch, errs := r.client.Subscribe(r.ctx, `topic=="/tasks/oom"`)
	stream:
		for {
			select {
			case env := <-ch:
				if env == nil || env.Namespace != r.ns || env.Event == nil {
					continue
				}
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				if e, ok := v.(*events.TaskOOM); ok {
					r.log.Debug("oom event", "container", e.ContainerID)
					r.oomChan(e.ContainerID, true)
				}
			case err := <-errs:
				if err != nil && r.ctx.Err() == nil {
					r.log.Warn("containerd event stream broken", "err", err)
				}
				break stream
			}
		}
		select {
		case <-r.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// oomChan returns the channel closed on the OOM event of container id,
// creating it; fire closes it (only for a container of this Runner).
func (r *Runner) oomChan(id string, fire bool) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := r.ooms[id]
	if ch == nil {
		if fire {
			return nil
		}
		ch = make(chan struct{})
		r.ooms[id] = ch
	}
	if fire {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
	return ch
}

// Process is one running container.
type Process struct {
	r    *Runner
	id   string
	c    client.Container
	task client.Task
	exit <-chan client.ExitStatus
	oom  chan struct{}

	once    sync.Once
	code    int
	oomKill bool
	waitErr error
}

// Start creates the container and starts its process.
func (r *Runner) Start(ctx context.Context, s Spec) (_ *Process, err error) {
	if r.ctx.Err() != nil {
		return nil, errors.New("container: runner closed")
	}
	r.rootMu.Lock()
	tops, err := syncRoot(r.root)
	r.rootMu.Unlock()
	if err != nil {
		return nil, err
	}
	spec, err := buildSpec(r.ns, r.root, tops, s)
	if err != nil {
		return nil, err
	}
	ctx = namespaces.WithNamespace(ctx, r.ns)
	c, err := r.client.NewContainer(ctx, s.ID,
		client.WithRuntime(runtimeName, nil),
		client.WithSpec(spec),
		client.WithContainerLabels(map[string]string{OwnerLabel: r.owner}))
	if err != nil {
		return nil, fmt.Errorf("container %s: create: %w", s.ID, err)
	}
	p := &Process{r: r, id: s.ID, c: c, oom: r.oomChan(s.ID, false)}
	defer func() {
		if err != nil {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			p.remove(ctx)
		}
	}()
	p.task, err = c.NewTask(ctx, streams(s.Stdout, s.Stderr))
	if err != nil {
		return nil, fmt.Errorf("container %s: create task: %w", s.ID, err)
	}
	// Wait before Start, or a quick exit could be missed.
	if p.exit, err = p.task.Wait(r.ctx); err != nil {
		return nil, fmt.Errorf("container %s: wait: %w", s.ID, err)
	}
	if err = p.task.Start(ctx); err != nil {
		return nil, fmt.Errorf("container %s: start: %w", s.ID, err)
	}
	r.log.Debug("container started", "container", s.ID, "pid", p.task.Pid(), "argv", s.Argv)
	return p, nil
}

// ID is the container's id.
func (p *Process) ID() string { return p.id }

// Pid is the host pid of the container's first process.
func (p *Process) Pid() int { return int(p.task.Pid()) }

// Signal sends sig to every process of the container. The first process
// is the init of its pid namespace: it only receives signals it handles,
// except SIGKILL. os.ErrProcessDone when the container is gone.
func (p *Process) Signal(sig syscall.Signal) error {
	ctx, cancel := context.WithTimeout(p.r.ctx, 10*time.Second)
	defer cancel()
	err := p.task.Kill(ctx, sig, client.WithKillAll)
	switch {
	case err == nil:
		return nil
	case errdefs.IsNotFound(err), errdefs.IsFailedPrecondition(err):
		return os.ErrProcessDone
	}
	return fmt.Errorf("container %s: signal %v: %w", p.id, sig, err)
}

// Wait blocks until the process exits, then deletes the task and the
// container. exitCode is 128+signal for a process killed by a signal;
// oomKilled tells that the kernel killed it at its memory limit. Safe to
// call more than once and from several goroutines.
func (p *Process) Wait() (exitCode int, oomKilled bool, err error) {
	p.once.Do(p.wait)
	return p.code, p.oomKill, p.waitErr
}

func (p *Process) wait() {
	st := <-p.exit
	code, _, err := st.Result()
	p.code = int(code)
	if err != nil {
		p.code = -1
		p.waitErr = fmt.Errorf("container %s: wait: %w", p.id, err)
	}
	// The cgroup still exists until the task is deleted.
	kills, readable := p.r.cg.oomKills(p.r.ns, p.id)
	var grace <-chan time.Time
	if !readable && p.code == 128+int(syscall.SIGKILL) {
		// containerd's event is the only witness; it may trail the exit.
		grace = time.After(200 * time.Millisecond)
	}
	if grace != nil {
		select {
		case <-p.oom:
			p.oomKill = true
		case <-grace:
		}
	} else {
		select {
		case <-p.oom:
			p.oomKill = true
		default:
		}
	}
	p.oomKill = p.oomKill || kills > 0
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.r.ctx), 30*time.Second)
	defer cancel()
	if err := p.remove(ctx); err != nil && p.waitErr == nil {
		p.waitErr = err
	}
	p.r.log.Debug("container exited", "container", p.id, "code", p.code, "oom", p.oomKill)
}

// remove deletes the task (killing what is left of it) and the container.
func (p *Process) remove(ctx context.Context) error {
	defer func() {
		p.r.mu.Lock()
		delete(p.r.ooms, p.id)
		p.r.mu.Unlock()
	}()
	var errs []error
	if p.task != nil {
		if _, err := p.task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("container %s: delete task: %w", p.id, err))
		}
	}
	if err := p.c.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("container %s: delete: %w", p.id, err))
	}
	return errors.Join(errs...)
}

// Cleanup kills and deletes the containers of the namespace a previous
// daemon of the same owner left (and unmarked ones); another owner's are
// left alone. Call it before the first Start. It returns how many
// containers it removed.
func (r *Runner) Cleanup(ctx context.Context) (int, error) {
	ctx = namespaces.WithNamespace(ctx, r.ns)
	cs, err := r.client.Containers(ctx)
	if err != nil {
		return 0, fmt.Errorf("containerd at %s: list containers: %w", r.addr, err)
	}
	n := 0
	var errs []error
	for _, c := range cs {
		labels, err := c.Labels(ctx)
		if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("container %s: labels: %w", c.ID(), err))
			continue
		}
		if owner, ok := labels[OwnerLabel]; ok && owner != r.owner {
			continue // another core's
		}
		if t, err := c.Task(ctx, nil); err == nil {
			if _, err := t.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("container %s: delete task: %w", c.ID(), err))
				continue
			}
		} else if !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("container %s: load task: %w", c.ID(), err))
			continue
		}
		if err := c.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("container %s: delete: %w", c.ID(), err))
			continue
		}
		r.log.Info("removed leftover container", "container", c.ID())
		n++
	}
	return n, errors.Join(errs...)
}

// streams connects the process's output. The shim wants both streams or
// neither.
func streams(stdout, stderr io.Writer) cio.Creator {
	if stdout == nil && stderr == nil {
		return cio.NullIO
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	return cio.NewCreator(cio.WithStreams(nil, stdout, stderr))
}
