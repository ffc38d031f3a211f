package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

func TestLambdaLogBytes(t *testing.T) {
	space := 128
	g := &groupdef.Group{Loggers: &groupdef.LoggerDefinitionVersion{Loggers: []groupdef.Logger{
		{Component: "GreengrassSystem", Type: "FileSystem", Space: &space},
	}}}
	if got := lambdaLogBytes(g); got != DefaultFunctionLogBytes {
		t.Fatalf("no Lambda logger: %d", got)
	}
	g.Loggers.Loggers = append(g.Loggers.Loggers, groupdef.Logger{Component: "Lambda", Type: "FileSystem", Space: &space})
	if got := lambdaLogBytes(g); got != 128<<10 {
		t.Fatalf("Lambda logger of 128 KB: %d", got)
	}
	if got := lambdaLogBytes(&groupdef.Group{}); got != DefaultFunctionLogBytes {
		t.Fatalf("no loggers: %d", got)
	}
}

// A local resource whose source is missing, or a device resource that is
// not a device, refuses the group: its container could not start.
func TestResourceSourcesChecked(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	g := &groupdef.Group{Resources: &groupdef.ResourceDefinitionVersion{Resources: []groupdef.Resource{
		{Id: "vol", ResourceDataContainer: &groupdef.ResourceDataContainer{LocalVolumeResourceData: &groupdef.LocalVolumeResourceData{SourcePath: t.TempDir(), DestinationPath: "/data"}}},
		{Id: "gone", ResourceDataContainer: &groupdef.ResourceDataContainer{LocalVolumeResourceData: &groupdef.LocalVolumeResourceData{SourcePath: "/nonexistent/volume"}}},
		{Id: "null", ResourceDataContainer: &groupdef.ResourceDataContainer{LocalDeviceResourceData: &groupdef.LocalDeviceResourceData{SourcePath: "/dev/null"}}},
		{Id: "file", ResourceDataContainer: &groupdef.ResourceDataContainer{LocalDeviceResourceData: &groupdef.LocalDeviceResourceData{SourcePath: file}}},
	}}}
	for _, tc := range []struct {
		uses []string
		want string // "" when accepted
	}{
		{[]string{"vol", "null"}, ""},
		{[]string{"vol", "gone"}, `resource "gone": SourcePath`},
		{[]string{"file"}, `resource "file": SourcePath: ` + file + ` is not a character or block device`},
	} {
		cfg := &groupdef.FunctionConfiguration{Environment: &groupdef.FunctionConfigurationEnvironment{}}
		for _, id := range tc.uses {
			cfg.Environment.ResourceAccessPolicies = append(cfg.Environment.ResourceAccessPolicies, groupdef.ResourceAccessPolicy{ResourceId: id, Permission: "ro"})
		}
		_, err := containerSpec(g, cfg, nil)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.uses, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: %v, want %q", tc.uses, err, tc.want)
		}
	}
}
