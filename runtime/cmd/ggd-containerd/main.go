// ggd-containerd is the runtime's helper for GreengrassContainer
// functions: it links the containerd client (so that ggd does not; see
// runtime/containerapi) and runs containers for the runtime that started
// it, over the socket pair on descriptor 3 (runtime/container/remote).
// It is not meant to be run by hand.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/evergreen-edge/evergreen/runtime/container"
	"github.com/evergreen-edge/evergreen/runtime/container/remote"
)

func main() {
	address := flag.String("address", container.DefaultAddress, "containerd socket")
	namespace := flag.String("namespace", container.DefaultNamespace, "containerd namespace")
	owner := flag.String("owner", "", "marks the containers; only this owner's are removed at start (the runtime passes its DIR)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "ggd-containerd")
	f := os.NewFile(3, "containers")
	fc, err := net.FileConn(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ggd-containerd: descriptor 3 is not the runtime's socket; this helper is started by `ggd runtime`")
		os.Exit(2)
	}
	f.Close()
	conn := fc.(*net.UnixConn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	r, err := container.New(ctx, container.Options{Address: *address, Namespace: *namespace, Owner: *owner, Log: log})
	if err != nil {
		cancel()
		remote.Send(conn, &remote.Message{Op: "ready", Err: err.Error()}, -1)
		os.Exit(1)
	}
	n, err := r.Cleanup(ctx)
	cancel()
	if err != nil {
		log.Warn("remove containers left by a previous runtime", "err", err)
	}
	if err := remote.Send(conn, &remote.Message{Op: "ready", Cleaned: n}, -1); err != nil {
		os.Exit(1)
	}
	s := &server{conn: conn, r: r, log: log, procs: map[string]*container.Process{}}
	s.serve()
	r.Close()
}

type server struct {
	conn  *net.UnixConn
	r     *container.Runner
	log   *slog.Logger
	wmu   sync.Mutex // one message at a time on conn
	mu    sync.Mutex
	procs map[string]*container.Process
}

func (s *server) send(m *remote.Message) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := remote.Send(s.conn, m, -1); err != nil {
		s.log.Warn("send to the runtime", "err", err)
	}
}

func (s *server) serve() {
	for {
		m, fd, err := remote.Receive(s.conn)
		if err != nil {
			return // the runtime is gone
		}
		switch m.Op {
		case "start":
			go s.start(m, fd)
		case "signal":
			if fd >= 0 {
				syscall.Close(fd)
			}
			go s.signal(m)
		default:
			if fd >= 0 {
				syscall.Close(fd)
			}
			s.send(&remote.Message{Op: "reply", Seq: m.Seq, Err: "unknown operation " + m.Op})
		}
	}
}

func (s *server) start(m *remote.Message, fd int) {
	var out *os.File
	if fd >= 0 {
		out = os.NewFile(uintptr(fd), "output")
	}
	if m.Spec == nil {
		if out != nil {
			out.Close()
		}
		s.send(&remote.Message{Op: "reply", Seq: m.Seq, Err: "start without a spec"})
		return
	}
	spec := *m.Spec
	if out != nil {
		spec.Stdout, spec.Stderr = out, out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	p, err := s.r.Start(ctx, spec)
	cancel()
	if err != nil {
		if out != nil {
			out.Close()
		}
		s.send(&remote.Message{Op: "reply", Seq: m.Seq, Err: err.Error()})
		return
	}
	s.mu.Lock()
	s.procs[spec.ID] = p
	s.mu.Unlock()
	s.send(&remote.Message{Op: "reply", Seq: m.Seq, Pid: p.Pid()})
	code, oom, werr := p.Wait()
	if out != nil {
		out.Close()
	}
	s.mu.Lock()
	delete(s.procs, spec.ID)
	s.mu.Unlock()
	exit := &remote.Message{Op: "exit", ID: spec.ID, Code: code, OOM: oom}
	if werr != nil {
		exit.Err = werr.Error()
	}
	s.send(exit)
}

func (s *server) signal(m *remote.Message) {
	s.mu.Lock()
	p := s.procs[m.ID]
	s.mu.Unlock()
	reply := &remote.Message{Op: "reply", Seq: m.Seq}
	if p == nil {
		reply.Err = os.ErrProcessDone.Error()
	} else if err := p.Signal(syscall.Signal(m.Sig)); err != nil {
		reply.Err = err.Error()
	}
	s.send(reply)
}
