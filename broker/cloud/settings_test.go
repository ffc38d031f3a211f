package cloud

import (
	"errors"
	"strings"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

func groupWithSpooler(vars map[string]string) *groupdef.Group {
	return &groupdef.Group{Functions: &groupdef.FunctionDefinitionVersion{Functions: []groupdef.Function{
		{Id: "user", FunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:hello:1",
			FunctionConfiguration: &groupdef.FunctionConfiguration{Environment: &groupdef.FunctionConfigurationEnvironment{
				Variables: map[string]string{"GG_CONFIG_MAX_SIZE_BYTES": "1"}}}},
		{Id: "spooler", FunctionArn: "arn:aws:lambda:::function:GGCloudSpooler:1",
			FunctionConfiguration: &groupdef.FunctionConfiguration{Environment: &groupdef.FunctionConfigurationEnvironment{Variables: vars}}},
	}}}
}

// Test 7: the settings come from GGCloudSpooler's environment; a bad value
// is refused with its path in the group.
func TestSettingsFromGroup(t *testing.T) {
	def := DefaultSpoolerSettings()
	if def != (SpoolerSettings{Storage: "Memory", MaxBytes: 2621440, SubscriptionQuality: "AtMostOnce", WhenFull: "DropOldest", MaxInflight: 100}) {
		t.Fatalf("defaults %+v are not v1's", def)
	}
	for _, g := range []*groupdef.Group{nil, {}, {Functions: &groupdef.FunctionDefinitionVersion{}}, groupWithSpooler(nil)} {
		if s, err := SettingsFromGroup(g); err != nil || s != def {
			t.Errorf("SettingsFromGroup(%+v) = %+v, %v; want the defaults", g, s, err)
		}
	}
	s, err := SettingsFromGroup(groupWithSpooler(map[string]string{
		"GG_CONFIG_STORAGE_TYPE":         "FileSystem",
		"GG_CONFIG_MAX_SIZE_BYTES":       "262144",
		"GG_CONFIG_SUBSCRIPTION_QUALITY": "AtLeastOncePersistent",
		"EVERGREEN_SPOOLER_WHEN_FULL":    "RefuseNew",
		"EVERGREEN_CLOUD_MAX_INFLIGHT":   "65535",
		"SOMETHING_ELSE":                 "ignored, as v1 did",
	}))
	want := SpoolerSettings{Storage: "FileSystem", MaxBytes: 262144, SubscriptionQuality: "AtLeastOncePersistent", WhenFull: "RefuseNew", MaxInflight: 65535}
	if err != nil || s != want {
		t.Errorf("SettingsFromGroup = %+v, %v; want %+v", s, err, want)
	}
	// Unqualified and other partitions name the same system function.
	g := groupWithSpooler(map[string]string{"GG_CONFIG_STORAGE_TYPE": "FileSystem"})
	g.Functions.Functions[1].FunctionArn = "arn:aws-cn:lambda:::function:GGCloudSpooler"
	if s, err := SettingsFromGroup(g); err != nil || s.Storage != StorageFileSystem {
		t.Errorf("unqualified aws-cn spooler ARN: %+v, %v", s, err)
	}

	const p = "Functions[1].FunctionConfiguration.Environment.Variables."
	for name, value := range map[string]string{
		"GG_CONFIG_MAX_SIZE_BYTES":       "262143",
		"GG_CONFIG_STORAGE_TYPE":         "Disk",
		"GG_CONFIG_SUBSCRIPTION_QUALITY": "ExactlyOnce",
		"EVERGREEN_SPOOLER_WHEN_FULL":    "DropNewest",
		"EVERGREEN_CLOUD_MAX_INFLIGHT":   "0",
	} {
		_, err := SettingsFromGroup(groupWithSpooler(map[string]string{name: value}))
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), p+name+": ") {
			t.Errorf("%s=%s: %v; want InvalidArgument starting with %s%s", name, value, err, p, name)
		}
	}
	for _, v := range []string{"2.5MB", "-1", "", "99999999999999999999"} {
		if _, err := SettingsFromGroup(groupWithSpooler(map[string]string{"GG_CONFIG_MAX_SIZE_BYTES": v})); err == nil {
			t.Errorf("GG_CONFIG_MAX_SIZE_BYTES=%q accepted", v)
		}
	}
	for _, v := range []string{"65536", "x", "-5"} {
		if _, err := SettingsFromGroup(groupWithSpooler(map[string]string{"EVERGREEN_CLOUD_MAX_INFLIGHT": v})); err == nil {
			t.Errorf("EVERGREEN_CLOUD_MAX_INFLIGHT=%q accepted", v)
		}
	}
	two := groupWithSpooler(nil)
	two.Functions.Functions = append(two.Functions.Functions, groupdef.Function{Id: "again", FunctionArn: "arn:aws:lambda:::function:GGCloudSpooler:2"})
	if _, err := SettingsFromGroup(two); err == nil || !strings.HasPrefix(err.Error(), "Functions[2].FunctionArn: ") {
		t.Errorf("two spoolers: %v", err)
	}
}
