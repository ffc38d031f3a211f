package cloudota

import (
	"errors"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

func TestParseRequest(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	sig := `{"format":1}`
	for _, tc := range []struct{ in, field string }{
		{in: `{"jobId":"j-1","url":"https://h/b.tar.gz","sha256":"` + sha + `","signature":` + sig + `}`},
		{in: `{"jobId":"j-2","url":"https://h/b.tar.gz","sha256":"` + sha + `","size":10,"signature":` + sig + `,"targetVersion":"1.2.0","force":true}`},
		{in: `nope`, field: "request"},
		{in: `{"url":"https://h/b","sha256":"` + sha + `","signature":` + sig + `}`, field: "jobId"},
		{in: `{"jobId":"j","url":"http://h/b","sha256":"` + sha + `","signature":` + sig + `}`, field: "url"},
		{in: `{"jobId":"j","url":"/tmp/b","sha256":"` + sha + `","signature":` + sig + `}`, field: "url"},
		{in: `{"jobId":"j","url":"https://h/b","sha256":"abc","signature":` + sig + `}`, field: "sha256"},
		{in: `{"jobId":"j","url":"https://h/b","sha256":"` + sha + `","size":-1,"signature":` + sig + `}`, field: "size"},
		{in: `{"jobId":"j","url":"https://h/b","sha256":"` + sha + `"}`, field: "signature"},
		{in: `{"jobId":"j","url":"https://h/b","sha256":"` + sha + `","signature":"c2ln"}`, field: "signature"},
	} {
		r, err := ParseRequest([]byte(tc.in))
		if tc.field == "" {
			if err != nil || r.JobID == "" {
				t.Errorf("%s: %v %v", tc.in, r, err)
			}
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%s: %v, want an error naming %s", tc.in, err, tc.field)
		}
	}
	if RequestTopic("c") != "evergreen/things/c/ota/request" || StatusTopic("c") != "evergreen/things/c/ota/status" {
		t.Error("topics")
	}
	if JobID([]byte(`{"jobId":"x-1","url":5}`)) != "x-1" || JobID([]byte(`{"jobId":"-"}`)) != "" {
		t.Error("JobID")
	}
}
