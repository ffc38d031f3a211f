// Package remote runs GreengrassContainer processes through the
// ggd-containerd helper (runtime/cmd/ggd-containerd), which links the
// containerd client so that ggd does not (see package containerapi).
//
// The runtime starts the helper with one end of a SOCK_SEQPACKET socket
// pair as its descriptor 3; each message is one JSON object. A start
// request carries the function's output descriptor with SCM_RIGHTS, so the
// container writes straight into the runtime's log pipe. The helper dies
// with the runtime (PDEATHSIG); containers it leaves are removed by the
// next helper's Cleanup.
package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/evergreen-edge/evergreen/runtime/containerapi"
)

// Message is one message between the runtime and the helper.
type Message struct {
	Op   string             `json:"op"` // start, signal, exit, reply, ready
	Seq  uint64             `json:"seq,omitempty"`
	ID   string             `json:"id,omitempty"`
	Spec *containerapi.Spec `json:"spec,omitempty"`
	// HasOutput: the start request carries the output descriptor.
	HasOutput bool   `json:"hasOutput,omitempty"`
	Sig       int    `json:"sig,omitempty"`
	Pid       int    `json:"pid,omitempty"`
	Code      int    `json:"code,omitempty"`
	OOM       bool   `json:"oom,omitempty"`
	Err       string `json:"err,omitempty"`
	Cleaned   int    `json:"cleaned,omitempty"`
}

// MaxMessage bounds one message (a spec is a few KB).
const MaxMessage = 256 << 10

// Send writes m on c, with fd attached when fd >= 0.
func Send(c *net.UnixConn, m *Message, fd int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("container message of %d bytes is over %d", len(b), MaxMessage)
	}
	var oob []byte
	if fd >= 0 {
		oob = syscall.UnixRights(fd)
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

// Receive reads one message and the descriptor it carries (-1: none).
func Receive(c *net.UnixConn) (*Message, int, error) {
	buf := make([]byte, MaxMessage)
	oob := make([]byte, syscall.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, -1, err
	}
	if n == 0 {
		return nil, -1, errors.New("container helper connection closed")
	}
	fd := -1
	if oobn > 0 {
		if scms, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil && len(scms) > 0 {
			if fds, err := syscall.ParseUnixRights(&scms[0]); err == nil && len(fds) > 0 {
				fd = fds[0]
			}
		}
	}
	m := &Message{}
	if err := json.Unmarshal(buf[:n], m); err != nil {
		if fd >= 0 {
			syscall.Close(fd)
		}
		return nil, -1, fmt.Errorf("container helper message: %w", err)
	}
	return m, fd, nil
}

// SocketPair returns the two ends of a SOCK_SEQPACKET pair: ours as a
// connection, the helper's as a file to hand to exec.
func SocketPair() (*net.UnixConn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	ours := os.NewFile(uintptr(fds[0]), "containers")
	defer ours.Close()
	c, err := net.FileConn(ours)
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "containers-helper"), nil
}

// Client is the runtime's side: a containerapi.Runner.
type Client struct {
	conn *net.UnixConn
	cmd  *exec.Cmd
	log  *slog.Logger

	mu      sync.Mutex
	seq     uint64
	replies map[uint64]chan *Message
	procs   map[string]*process
	err     error
	done    chan struct{}
}

var _ containerapi.Runner = (*Client)(nil)

// Start runs the helper (its path, its arguments: --address, --namespace)
// and waits for it to be connected to containerd.
func Start(ctx context.Context, helper string, args []string, log *slog.Logger) (*Client, error) {
	conn, theirs, err := SocketPair()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(helper, args...)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		theirs.Close()
		conn.Close()
		return nil, fmt.Errorf("start the container helper %s: %w", helper, err)
	}
	theirs.Close()
	c := &Client{conn: conn, cmd: cmd, log: log, replies: map[uint64]chan *Message{}, procs: map[string]*process{}, done: make(chan struct{})}
	ready := make(chan *Message, 1)
	go c.read(ready)
	select {
	case m := <-ready:
		if m == nil || m.Err != "" {
			why := "it exited"
			if m != nil {
				why = m.Err
			}
			c.Close()
			return nil, fmt.Errorf("container helper: %s", why)
		}
		if m.Cleaned > 0 {
			log.Info("removed containers left by a previous runtime", "containers", m.Cleaned)
		}
		return c, nil
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("container helper did not connect to containerd: %w", ctx.Err())
	}
}

func (c *Client) read(ready chan<- *Message) {
	defer close(c.done)
	first := true
	for {
		m, fd, err := Receive(c.conn)
		if fd >= 0 {
			syscall.Close(fd)
		}
		if err != nil {
			c.fail(fmt.Errorf("container helper gone: %w", err))
			if first {
				ready <- nil
			}
			return
		}
		switch m.Op {
		case "ready":
			if first {
				first = false
				ready <- m
			}
		case "reply":
			c.mu.Lock()
			ch := c.replies[m.Seq]
			delete(c.replies, m.Seq)
			c.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		case "exit":
			c.mu.Lock()
			p := c.procs[m.ID]
			delete(c.procs, m.ID)
			c.mu.Unlock()
			if p != nil {
				p.finish(m.Code, m.OOM, errFrom(m.Err))
			}
		}
	}
}

func errFrom(s string) error {
	if s == "" {
		return nil
	}
	return errors.New(s)
}

// fail ends every pending request and process with err.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	for seq, ch := range c.replies {
		ch <- &Message{Err: err.Error()}
		delete(c.replies, seq)
	}
	for id, p := range c.procs {
		p.finish(-1, false, err)
		delete(c.procs, id)
	}
}

func (c *Client) request(m *Message, fd int) (*Message, error) {
	ch := make(chan *Message, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.seq++
	m.Seq = c.seq
	c.replies[m.Seq] = ch
	c.mu.Unlock()
	if err := Send(c.conn, m, fd); err != nil {
		c.mu.Lock()
		delete(c.replies, m.Seq)
		c.mu.Unlock()
		return nil, err
	}
	r := <-ch
	if r.Err != "" {
		return r, errors.New(r.Err)
	}
	return r, nil
}

// Start starts a container process. Stdout and Stderr must be the same
// *os.File, or nil.
func (c *Client) Start(ctx context.Context, s containerapi.Spec) (containerapi.Process, error) {
	fd := -1
	if s.Stdout != nil {
		f, ok := s.Stdout.(*os.File)
		if !ok || (s.Stderr != nil && s.Stderr != s.Stdout) {
			return nil, errors.New("container helper: Stdout must be an *os.File and Stderr the same or nil")
		}
		fd = int(f.Fd())
	}
	spec := s
	p := &process{c: c, id: s.ID, done: make(chan struct{})}
	c.mu.Lock()
	c.procs[s.ID] = p
	c.mu.Unlock()
	r, err := c.request(&Message{Op: "start", ID: s.ID, Spec: &spec, HasOutput: fd >= 0}, fd)
	if err != nil {
		c.mu.Lock()
		delete(c.procs, s.ID)
		c.mu.Unlock()
		return nil, err
	}
	p.pid = r.Pid
	return p, nil
}

// Close stops the helper (containers still running are left for the next
// helper's Cleanup; the runtime stops its workers first).
func (c *Client) Close() error {
	c.conn.Close()
	<-c.done
	if c.cmd.Process != nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	}
	return nil
}

type process struct {
	c    *Client
	id   string
	pid  int
	once sync.Once
	done chan struct{}
	code int
	oom  bool
	err  error
}

func (p *process) finish(code int, oom bool, err error) {
	p.once.Do(func() {
		p.code, p.oom, p.err = code, oom, err
		close(p.done)
	})
}

func (p *process) Pid() int { return p.pid }

func (p *process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	_, err := p.c.request(&Message{Op: "signal", ID: p.id, Sig: int(sig)}, -1)
	return err
}

func (p *process) Wait() (int, bool, error) {
	<-p.done
	return p.code, p.oom, p.err
}
