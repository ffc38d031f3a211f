package streammgr

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

func groupWithEnv(t *testing.T, env string) *groupdef.Group {
	t.Helper()
	doc := `{"Functions":{"Functions":[
		{"Id":"f","FunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:f:1","FunctionConfiguration":{"Executable":"f","Timeout":3}},
		{"Id":"sm","FunctionArn":"arn:aws:lambda:::function:GGStreamManager:1","FunctionConfiguration":{"Pinned":true,"MemorySize":4194304,"Timeout":3,
			"Environment":{"Variables":` + env + `}}}]}}`
	var g groupdef.Group
	if err := json.Unmarshal([]byte(doc), &g); err != nil {
		t.Fatal(err)
	}
	return &g
}

// The GGStreamManager function's variables override config.json's
// evergreen.streams; left out, config.json's values stand; a bad value is
// an invalid argument naming its path in the group; the store directory
// and port are reported as ignored when they differ from ours.
func TestSettingsFromGroup(t *testing.T) {
	cfg := config.Default().Evergreen.Streams
	const listen, dir = "127.0.0.1:8088", "/var/lib/evergreen/data/streammgr"

	s, err := SettingsFromGroup(nil, cfg, listen, dir)
	if err != nil || !s.AuthenticateClient || s.ThreadPoolSize != 5 || s.MaxBandwidthKbps != 0 || s.S3MinPartSize != 5242880 {
		t.Fatalf("no group: %+v %v", s, err)
	}
	g := groupWithEnv(t, `{"STREAM_MANAGER_AUTHENTICATE_CLIENT":"false","STREAM_MANAGER_EXPORTER_MAX_BANDWIDTH":"512",
		"STREAM_MANAGER_EXPORTER_THREAD_POOL_SIZE":"2","STREAM_MANAGER_EXPORTER_S3_DESTINATION_MULTIPART_UPLOAD_MIN_PART_SIZE_BYTES":"10485760",
		"STREAM_MANAGER_SERVER_PORT":"8088","STREAM_MANAGER_STORE_ROOT_DIR":"/var/lib/evergreen/data/streammgr/","JVM_ARGS":"-Xmx32m",
		"STREAM_MANAGER_READ_ONLY_DIRS":"/data,/opt/x"}`)
	s, err = SettingsFromGroup(g, cfg, listen, dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.AuthenticateClient || s.MaxBandwidthKbps != 512 || s.ThreadPoolSize != 2 || s.S3MinPartSize != 10485760 {
		t.Fatalf("group values not applied: %+v", s)
	}
	if len(s.Ignored) != 1 || !strings.HasPrefix(s.Ignored[0], "JVM_ARGS") {
		t.Fatalf("only JVM_ARGS differs from what runs: %q", s.Ignored)
	}
	s, err = SettingsFromGroup(groupWithEnv(t, `{"STREAM_MANAGER_SERVER_PORT":"9000","STREAM_MANAGER_STORE_ROOT_DIR":"/data/sm"}`), cfg, listen, dir)
	if err != nil || len(s.Ignored) != 2 {
		t.Fatalf("port and store directory that differ are reported: %+v %v", s.Ignored, err)
	}
	for env, field := range map[string]string{
		`{"STREAM_MANAGER_AUTHENTICATE_CLIENT":"yes"}`:                                           "STREAM_MANAGER_AUTHENTICATE_CLIENT",
		`{"STREAM_MANAGER_EXPORTER_THREAD_POOL_SIZE":"0"}`:                                       "STREAM_MANAGER_EXPORTER_THREAD_POOL_SIZE",
		`{"STREAM_MANAGER_EXPORTER_MAX_BANDWIDTH":"-1"}`:                                         "STREAM_MANAGER_EXPORTER_MAX_BANDWIDTH",
		`{"STREAM_MANAGER_SERVER_PORT":"http"}`:                                                  "STREAM_MANAGER_SERVER_PORT",
		`{"STREAM_MANAGER_STORE_ROOT_DIR":"data"}`:                                               "STREAM_MANAGER_STORE_ROOT_DIR",
		`{"STREAM_MANAGER_READ_ONLY_DIRS":"/a,b"}`:                                               "STREAM_MANAGER_READ_ONLY_DIRS",
		`{"STREAM_MANAGER_EXPORTER_S3_DESTINATION_MULTIPART_UPLOAD_MIN_PART_SIZE_BYTES":"1024"}`: "STREAM_MANAGER_EXPORTER_S3_DESTINATION_MULTIPART_UPLOAD_MIN_PART_SIZE_BYTES",
	} {
		_, err := SettingsFromGroup(groupWithEnv(t, env), cfg, listen, dir)
		want := "Functions[1].FunctionConfiguration.Environment.Variables." + field
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an invalid argument naming %s", env, err, want)
		}
	}
}
