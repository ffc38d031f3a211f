package clouddeploy

import (
	"errors"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

func TestParseRequest(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in, field string
		typ       string
	}{
		{in: `{"deploymentId":"d-1","group":{"Core":{}}}`, typ: NewDeployment},
		{in: `{"deploymentId":"d-2","deploymentType":"Redeployment"}`, typ: Redeployment},
		{in: `{"deploymentId":"d-3","deploymentType":"ResetDeployment"}`, typ: ResetDeployment},
		{in: `{"deploymentId":"d-4","groupUrl":"https://h/g.json","sha256":"` + sha + `","size":10}`, typ: NewDeployment},
		{in: `{"deploymentId":"d-5","group":{},"secrets":[{"name":"a","sealedValue":"RUdTMQ=="}]}`, typ: NewDeployment},
		{in: `{"deploymentId":"d","group":{},"secrets":[{"sealedValue":"RUdTMQ=="}]}`, field: "secrets[0].name"},
		{in: `{"deploymentId":"d","group":{},"secrets":[{"name":"a"}]}`, field: "secrets[0].sealedValue"},
		{in: `not json`, field: "request"},
		{in: `{"group":{}}`, field: "deploymentId"},
		{in: `{"deploymentId":"-x","group":{}}`, field: "deploymentId"},
		{in: `{"deploymentId":"d","deploymentType":"Sometimes","group":{}}`, field: "deploymentType"},
		{in: `{"deploymentId":"d","deploymentType":"ResetDeployment","group":{}}`, field: "group"},
		{in: `{"deploymentId":"d"}`, field: "group"},
		{in: `{"deploymentId":"d","group":{},"groupUrl":"https://h/g"}`, field: "groupUrl"},
		{in: `{"deploymentId":"d","groupUrl":"http://h/g","sha256":"` + sha + `"}`, field: "groupUrl"},
		{in: `{"deploymentId":"d","groupUrl":"https://h/g","sha256":"abc"}`, field: "sha256"},
		{in: `{"deploymentId":"d","groupUrl":"https://h/g","sha256":"` + sha + `","size":-1}`, field: "size"},
	} {
		r, err := ParseRequest([]byte(tc.in))
		if tc.field == "" {
			if err != nil || r.DeploymentType != tc.typ {
				t.Errorf("%s: %v %v", tc.in, r, err)
			}
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%s: %v, want an error naming %s", tc.in, err, tc.field)
		}
	}
	if StatusTopic("core-1") != "evergreen/things/core-1/deployments/status" || RequestTopic("core-1") != "evergreen/things/core-1/deployments/request" {
		t.Error("topics")
	}
}
