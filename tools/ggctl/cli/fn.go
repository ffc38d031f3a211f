package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	runtimev1 "github.com/evergreen-edge/evergreen/proto/evergreen/runtime/v1"
)

const runtimeDaemon = "runtime"

func (a *app) runtime() (runtimev1.RuntimeClient, error) {
	cc, err := a.dial(runtimeDaemon)
	if err != nil {
		return nil, err
	}
	return runtimev1.NewRuntimeClient(cc), nil
}

func cmdFnList(a *app, args []string) error {
	if _, err := a.parse(a.flags(), args, 0, 0); err != nil {
		return err
	}
	c, err := a.runtime()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.ListFunctions(ctx, &runtimev1.ListFunctionsRequest{})
	if err != nil {
		return a.rpcError(runtimeDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	if len(resp.GetFunctions()) == 0 {
		_, err := fmt.Fprintln(a.stdout, "no functions (no group deployed, or it has none)")
		return err
	}
	t := newTable(a.stdout, "NAME", "RUNTIME", "HANDLER", "LIFECYCLE", "ISOLATION", "TIMEOUT", "WORKERS", "ARN")
	for _, f := range resp.GetFunctions() {
		life := "on-demand"
		if f.GetPinned() {
			life = "pinned"
		}
		t.row(f.GetName(), f.GetRuntime(), f.GetHandler(), life, f.GetIsolationMode(), fmt.Sprintf("%ds", f.GetTimeoutSeconds()),
			strconv.Itoa(int(f.GetWorkers())), f.GetArn())
	}
	return t.flush()
}

func cmdFnWorkers(a *app, args []string) error {
	pos, err := a.parse(a.flags(), args, 0, 1)
	if err != nil {
		return err
	}
	c, err := a.runtime()
	if err != nil {
		return err
	}
	req := &runtimev1.ListWorkersRequest{}
	if len(pos) == 1 {
		req.Function = pos[0]
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.ListWorkers(ctx, req)
	if err != nil {
		return a.rpcError(runtimeDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	if len(resp.GetWorkers()) == 0 {
		_, err := fmt.Fprintln(a.stdout, "no workers")
		return err
	}
	t := newTable(a.stdout, "FUNCTION", "WORKER", "PID", "STATE")
	for _, w := range resp.GetWorkers() {
		t.row(w.GetFunctionArn(), w.GetWorkerId(), strconv.Itoa(int(w.GetPid())), w.GetState())
	}
	return t.flush()
}

func cmdFnInvoke(a *app, args []string) error {
	fs := a.flags()
	event := fs.Bool("event", false, "invocation type Event: do not wait for the result")
	file := fs.String("file", "", "read the payload from file `F` (- for standard input)")
	custom := fs.String("custom", "", "the client context's custom object, as `JSON`")
	pos, err := a.parse(fs, args, 1, 2)
	if err != nil {
		return err
	}
	var payload []byte
	if len(pos) == 2 || *file != "" {
		if payload, err = a.payload(pos[1:], *file); err != nil {
			return err
		}
	}
	c, err := a.runtime()
	if err != nil {
		return err
	}
	// A function may run up to its timeout (v1's maximum is 900 s): the
	// call waits for the result, not --timeout.
	ctx, cancel := a.unary()
	if !*event {
		ctx, cancel = contextWithoutTimeout(a)
	}
	defer cancel()
	resp, err := c.Invoke(ctx, &runtimev1.InvokeRequest{Function: pos[0], Payload: payload, Event: *event, CustomJson: *custom})
	if err != nil {
		return a.rpcError(runtimeDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	if *event {
		_, err := fmt.Fprintf(a.stdout, "queued (invocation %s)\n", resp.GetInvocationId())
		return err
	}
	out := resp.GetPayload()
	if json.Valid(out) && len(out) > 0 {
		var b bytes.Buffer
		if json.Indent(&b, out, "", "  ") == nil {
			out = b.Bytes()
		}
	}
	a.stdout.Write(out)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		fmt.Fprintln(a.stdout)
	}
	if fe := resp.GetFunctionError(); fe != "" {
		return failf("function error (%s)", fe)
	}
	return nil
}

func cmdFnRestart(a *app, args []string) error {
	pos, err := a.parse(a.flags(), args, 1, 1)
	if err != nil {
		return err
	}
	c, err := a.runtime()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.RestartFunction(ctx, &runtimev1.RestartFunctionRequest{Function: pos[0]})
	if err != nil {
		return a.rpcError(runtimeDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	_, err = fmt.Fprintf(a.stdout, "stopped %d worker(s) of %s\n", resp.GetStoppedWorkers(), pos[0])
	return err
}

// cmdFnLogs reads DIR/logs/user/<name>.log, which the runtime writes (the
// function's stdout, stderr and log sink lines).
func cmdFnLogs(a *app, args []string) error {
	fs := a.flags()
	follow := fs.Bool("f", false, "keep printing new lines until interrupted (Ctrl-C)")
	lines := fs.Int("n", 10, "print the last `N` lines first")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *lines < 1 {
		return usageErrorf("fn logs: -n must be at least 1, got %d", *lines)
	}
	name := pos[0]
	if i := strings.LastIndex(name, ":function:"); i >= 0 { // an ARN: its name
		name, _, _ = strings.Cut(name[i+len(":function:"):], ":")
	}
	if name == "" || strings.ContainsAny(name, "/\\") {
		return usageErrorf("fn logs: %q is not a function name", pos[0])
	}
	path := filepath.Join(a.root.Dir(), "logs", "user", name+".log")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &exitError{code: ExitNotFound, msg: fmt.Sprintf("no log for function %s (%s): it has not run on this core", name, path)}
	}
	if err != nil {
		return failf("fn logs: %v", err)
	}
	defer f.Close()
	if err := printTail(a.stdout, f, *lines); err != nil {
		return err
	}
	if !*follow {
		return nil
	}
	return followLog(a.ctx, a.stdout, path, f, pollWait(200*time.Millisecond))
}

// pollWait waits d between looks at a log that has nothing new; it
// reports false when ctx ends.
func pollWait(d time.Duration) func(context.Context) bool {
	return func(ctx context.Context) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
}

// followLog prints what is appended to the log at path, read through f
// from its current offset, until wait reports false. The runtime rotates
// a function log by renaming it to path.1 and starting a new file: at the
// end of f, when path names another file, the rest of f is printed (lines
// written just before the rename) and the new file is read from its
// start; a file that shrank in place is read again from its start. f is
// the caller's to close; the files opened here are closed here.
func followLog(ctx context.Context, w io.Writer, path string, f *os.File, wait func(context.Context) bool) error {
	cur := f
	defer func() {
		if cur != f {
			cur.Close()
		}
	}()
	r := bufio.NewReader(cur)
	drain := func() error {
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				if _, werr := io.WriteString(w, line); werr != nil {
					return werr
				}
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	for {
		if err := drain(); err != nil {
			return failf("fn logs: %v", err)
		}
		next, truncated, err := rotated(path, cur)
		if err != nil {
			return failf("fn logs: %v", err)
		}
		if truncated {
			r.Reset(cur)
			continue
		}
		if next != nil {
			// Lines may have reached the old file between the read that
			// met its end and the rename: print them first.
			if err := drain(); err != nil {
				next.Close()
				return failf("fn logs: %v", err)
			}
			if cur != f {
				cur.Close()
			}
			cur = next
			r.Reset(cur)
			continue
		}
		if !wait(ctx) {
			return nil
		}
	}
}

// rotated looks at path once cur is read to its end: it returns the new
// file open at its start when path names another file than cur (a
// rotation), or truncated (cur rewound to its start) when cur shrank
// below the offset read. Between a rename and the new file's creation
// path is missing: nothing to do yet.
func rotated(path string, cur *os.File) (next *os.File, truncated bool, err error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	cst, err := cur.Stat()
	if err != nil {
		return nil, false, err
	}
	if !os.SameFile(st, cst) {
		next, err = os.Open(path)
		if errors.Is(err, os.ErrNotExist) { // rotated again meanwhile
			return nil, false, nil
		}
		return next, false, err
	}
	pos, err := cur.Seek(0, io.SeekCurrent)
	if err != nil || cst.Size() >= pos {
		return nil, false, err
	}
	_, err = cur.Seek(0, io.SeekStart)
	return nil, err == nil, err
}

// printTail prints the last n lines of f and leaves f at its end.
func printTail(w io.Writer, f *os.File, n int) error {
	const window = 64 << 10
	st, err := f.Stat()
	if err != nil {
		return err
	}
	start := max(0, st.Size()-window)
	buf := make([]byte, st.Size()-start)
	if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	ls := strings.SplitAfter(string(buf), "\n")
	if len(ls) > 0 && ls[len(ls)-1] == "" {
		ls = ls[:len(ls)-1]
	}
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	for _, l := range ls {
		fmt.Fprint(w, l)
	}
	_, err = f.Seek(st.Size(), io.SeekStart)
	return err
}

func contextWithoutTimeout(a *app) (context.Context, context.CancelFunc) {
	return context.WithCancel(a.ctx)
}
