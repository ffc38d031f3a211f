package groupdef_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

// A system function is found by its name whatever its version, with its
// variables and path; a user function of that name is not it; a second
// entry is refused naming it.
func TestSystemFunction(t *testing.T) {
	parse := func(doc string) *groupdef.Group {
		var g groupdef.Group
		if err := json.Unmarshal([]byte(doc), &g); err != nil {
			t.Fatal(err)
		}
		return &g
	}
	if _, _, found, err := (*groupdef.Group)(nil).SystemFunction("GGCloudSpooler"); found || err != nil {
		t.Fatalf("nil group: %v %v", found, err)
	}
	g := parse(`{"Functions":{"Functions":[
		{"Id":"u","FunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:GGCloudSpooler:1"},
		{"Id":"s","FunctionArn":"arn:aws:lambda:::function:GGCloudSpooler:1","FunctionConfiguration":{"Environment":{"Variables":{"A":"b"}}}},
		{"Id":"m","FunctionArn":"arn:aws:lambda:::function:GGStreamManager:1"}]}}`)
	p, vars, found, err := g.SystemFunction("GGCloudSpooler")
	if err != nil || !found || p != "Functions[1]" || vars["A"] != "b" {
		t.Fatalf("spooler: %q %v %v %v", p, vars, found, err)
	}
	if p, vars, found, err := g.SystemFunction("GGStreamManager"); err != nil || !found || p != "Functions[2]" || vars != nil {
		t.Fatalf("stream manager without variables: %q %v %v %v", p, vars, found, err)
	}
	if _, _, found, err := g.SystemFunction("GGIPDetector"); found || err != nil {
		t.Fatalf("absent: %v %v", found, err)
	}
	g = parse(`{"Functions":{"Functions":[
		{"Id":"a","FunctionArn":"arn:aws:lambda:::function:GGCloudSpooler:1"},
		{"Id":"b","FunctionArn":"arn:aws:lambda:::function:GGCloudSpooler:2"}]}}`)
	_, _, _, err = g.SystemFunction("GGCloudSpooler")
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "Functions[1].FunctionArn") || !strings.Contains(err.Error(), "the first is Functions[0]") {
		t.Fatalf("second entry: %v", err)
	}
}
