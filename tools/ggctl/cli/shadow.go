package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	shadowv1 "github.com/evergreen-edge/evergreen/proto/evergreen/shadow/v1"
)

const shadowDaemon = "shadow"

func (a *app) shadow() (shadowv1.ShadowClient, error) {
	cc, err := a.dial(shadowDaemon)
	if err != nil {
		return nil, err
	}
	return shadowv1.NewShadowClient(cc), nil
}

// printDocument prints a shadow document: indented JSON, which is also
// what --json prints (the document is JSON already).
func (a *app) printDocument(doc []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, doc, "", "  "); err != nil {
		_, err := a.stdout.Write(append(doc, '\n'))
		return err
	}
	out.WriteByte('\n')
	_, err := a.stdout.Write(out.Bytes())
	return err
}

func cmdShadowGet(a *app, args []string) error {
	fs := a.flags()
	name := fs.String("name", "", "a named shadow `N` instead of the classic shadow")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	c, err := a.shadow()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	d, err := c.Get(ctx, &shadowv1.GetRequest{Thing: pos[0], Name: *name})
	if err != nil {
		return a.rpcError(shadowDaemon, err)
	}
	return a.printDocument(d.GetDocument())
}

func cmdShadowUpdate(a *app, args []string) error {
	fs := a.flags()
	name := fs.String("name", "", "a named shadow `N` instead of the classic shadow")
	file := fs.String("file", "", "read the update document from file `F` (- for standard input)")
	pos, err := a.parse(fs, args, 1, 2)
	if err != nil {
		return err
	}
	body, err := a.payload(pos[1:], *file)
	if err != nil {
		return err
	}
	c, err := a.shadow()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	d, err := c.Update(ctx, &shadowv1.UpdateRequest{Thing: pos[0], Name: *name, Document: body})
	if err != nil {
		return a.rpcError(shadowDaemon, err)
	}
	return a.printDocument(d.GetDocument())
}

func cmdShadowDelete(a *app, args []string) error {
	fs := a.flags()
	name := fs.String("name", "", "a named shadow `N` instead of the classic shadow")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	c, err := a.shadow()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	d, err := c.Delete(ctx, &shadowv1.DeleteRequest{Thing: pos[0], Name: *name})
	if err != nil {
		return a.rpcError(shadowDaemon, err)
	}
	if a.g.json {
		return a.printDocument(d.GetDocument())
	}
	what := "shadow of " + pos[0]
	if *name != "" {
		what = fmt.Sprintf("shadow %q of %s", *name, pos[0])
	}
	_, err = fmt.Fprintf(a.stdout, "deleted the %s (version %d; the next update continues the numbering)\n", what, d.GetVersion())
	return err
}

func cmdShadowList(a *app, args []string) error {
	pos, err := a.parse(a.flags(), args, 0, 1)
	if err != nil {
		return err
	}
	c, err := a.shadow()
	if err != nil {
		return err
	}
	req := &shadowv1.ListRequest{}
	if len(pos) == 1 {
		req.Thing = pos[0]
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.List(ctx, req)
	if err != nil {
		return a.rpcError(shadowDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	if len(resp.GetShadows()) == 0 {
		_, err := fmt.Fprintln(a.stdout, "no shadows")
		return err
	}
	t := newTable(a.stdout, "THING", "NAME", "VERSION", "STATE-BYTES", "SYNC")
	for _, s := range resp.GetShadows() {
		name := s.GetName()
		if name == "" {
			name = "(classic)"
		}
		sync := "-"
		if s.GetSynced() {
			sync = s.GetSyncState()
		}
		t.row(s.GetThing(), name, strconv.FormatInt(s.GetVersion(), 10), strconv.FormatUint(uint64(s.GetStateBytes()), 10), sync)
	}
	return t.flush()
}
