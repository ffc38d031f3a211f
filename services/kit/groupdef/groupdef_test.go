package groupdef

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// examplePath is the hello-world group of docs/group-definition.md; parsing
// it here proves the documented example valid.
const examplePath = "../../../examples/hello-world/group.json"

const (
	helloArn  = "arn:aws:lambda:us-east-1:123456789012:function:hello-world:1"
	sensorArn = "arn:aws:iot:us-east-1:123456789012:thing/sensor-1"
	certArn   = "arn:aws:iot:us-east-1:123456789012:cert/75fcce4506e2b49c935ad64e43250abe43de607c55200dc94f52c7bf2e180e4d"
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustParse(t testing.TB, data []byte) *Group {
	t.Helper()
	g, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return g
}

// j decodes a JSON literal for use in mutations.
func j(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		panic(err)
	}
	return v
}

// get walks a decoded JSON tree: strings index objects, ints index arrays.
func get(root any, path ...any) any {
	v := root
	for _, k := range path {
		switch k := k.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v
}

func set(root any, value any, path ...any) {
	parent := get(root, path[:len(path)-1]...)
	switch k := path[len(path)-1].(type) {
	case string:
		parent.(map[string]any)[k] = value
	case int:
		parent.([]any)[k] = value
	}
}

func del(root any, path ...any) {
	delete(get(root, path[:len(path)-1]...).(map[string]any), path[len(path)-1].(string))
}

func appendTo(root any, value any, path ...any) {
	set(root, append(get(root, path...).([]any), value), path...)
}

var (
	fnConfig  = []any{"Functions", "Functions", 0, "FunctionConfiguration"}
	fnEnv     = append(slices.Clone(fnConfig), "Environment")
	resources = `{"Resources": [
		{"Id": "data", "Name": "data", "ResourceDataContainer": {"LocalVolumeResourceData": {"SourcePath": "/srv/data", "DestinationPath": "/data"}}},
		{"Id": "tty", "Name": "tty", "ResourceDataContainer": {"LocalDeviceResourceData": {"SourcePath": "/dev/ttyUSB0"}}},
		{"Id": "model", "Name": "model", "ResourceDataContainer": {"S3MachineLearningModelResourceData": {"DestinationPath": "/ml", "S3Uri": "s3://models/m.zip", "Evergreen": {"Url": "file:///srv/models/m.zip", "Sha256": "` + strings.Repeat("a", 64) + `"}}}},
		{"Id": "secret", "Name": "secret", "ResourceDataContainer": {"SecretsManagerSecretResourceData": {"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:s-AbCdEf"}}}
	]}`
)

func setResources(g any, list string) {
	set(g, map[string]any{"Resources": j(list)}, "Resources")
}

func p(elems ...any) []any { return append(slices.Clone(fnEnv), elems...) }

func noContainer(g any) {
	set(g, j(`{"IsolationMode": "NoContainer"}`), p("Execution")...)
	del(g, append(slices.Clone(fnConfig), "MemorySize")...)
}

func TestParseRejects(t *testing.T) {
	base := readFile(t, examplePath)
	tests := []struct {
		name   string
		raw    string      // the whole file, instead of a mutation of the example
		mutate func(g any) // changes the decoded example
		paths  []string    // exact paths, in order
		msg    string      // substring of the first error's message
	}{
		{name: "invalid JSON", raw: "{\n  \"Core\": }", paths: []string{""}, msg: "invalid JSON at line 2, column 11"},
		{name: "empty file", raw: " \n", paths: []string{""}, msg: "empty"},
		{name: "truncated", raw: `{"Core": {"Cores": [`, paths: []string{""}, msg: "unexpected end of input"},
		{name: "top level is an array", raw: `[]`, paths: []string{""}, msg: "want a JSON object"},
		{name: "data after the object", raw: `{} {}`, paths: []string{""}, msg: "unexpected data after the top-level object"},
		{name: "nesting too deep", raw: `{"Name": ` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, paths: []string{""}, msg: "deeper than 64"},
		{
			name:  "duplicate key",
			raw:   `{"Core": {"Cores": [{"Id": "c", "Id": "d", "ThingArn": "arn:aws:iot:us-east-1:123456789012:thing/c", "CertificateArn": "` + certArn + `"}]}}`,
			paths: []string{"Core.Cores[0].Id"}, msg: "duplicate key",
		},
		{name: "unknown top-level key", mutate: func(g any) { set(g, "x", "Groups") }, paths: []string{"Groups"}, msg: "allowed keys: GroupId, GroupVersionId, Name, Core"},
		{name: "unknown key with a case slip", mutate: func(g any) { set(g, "x", "Devices", "Devices", 0, "thingArn") }, paths: []string{"Devices[0].thingArn"}, msg: `did you mean "ThingArn"?`},
		{name: "top-level Name not a string", mutate: func(g any) { set(g, 7.0, "Name") }, paths: []string{"Name"}, msg: "want a string, got the number 7"},
		{name: "no core", mutate: func(g any) { del(g, "Core") }, paths: []string{"Core"}, msg: "exactly one core"},
		{name: "no core in the list", mutate: func(g any) { set(g, []any{}, "Core", "Cores") }, paths: []string{"Core.Cores"}, msg: "found 0"},
		{
			name: "two cores",
			mutate: func(g any) {
				appendTo(g, j(`{"Id": "core-2", "ThingArn": "arn:aws:iot:us-east-1:123456789012:thing/core-2", "CertificateArn": "`+certArn+`"}`), "Core", "Cores")
			},
			paths: []string{"Core.Cores"}, msg: "found 2",
		},
		{name: "core thing ARN malformed", mutate: func(g any) { set(g, "arn:aws:iot:us-east-1:1234:thing/c", "Core", "Cores", 0, "ThingArn") }, paths: []string{"Core.Cores[0].ThingArn"}, msg: `account "1234" must be 12 digits`},
		{
			name: "core thing name over 124 bytes",
			mutate: func(g any) {
				set(g, "arn:aws:iot:us-east-1:123456789012:thing/"+strings.Repeat("c", 125), "Core", "Cores", 0, "ThingArn")
			},
			paths: []string{"Core.Cores[0].ThingArn"}, msg: "core thing name is 125 bytes, the quota is 124",
		},
		{name: "core without certificate", mutate: func(g any) { del(g, "Core", "Cores", 0, "CertificateArn") }, paths: []string{"Core.Cores[0].CertificateArn"}, msg: "required"},
		{name: "SyncShadow not a boolean", mutate: func(g any) { set(g, "yes", "Core", "Cores", 0, "SyncShadow") }, paths: []string{"Core.Cores[0].SyncShadow"}, msg: "want a boolean, got a string"},
		{
			name: "duplicate device Id",
			mutate: func(g any) {
				appendTo(g, j(`{"Id": "sensor-1", "ThingArn": "arn:aws:iot:us-east-1:123456789012:thing/sensor-2", "CertificateArn": "`+certArn+`"}`), "Devices", "Devices")
			},
			paths: []string{"Devices[1].Id"}, msg: `"sensor-1" is already the Id of Devices[0]`,
		},
		{name: "device Id with a space", mutate: func(g any) { set(g, "sensor 1", "Devices", "Devices", 0, "Id") }, paths: []string{"Devices[0].Id"}, msg: "may only contain"},
		{name: "device Id too long", mutate: func(g any) { set(g, strings.Repeat("d", 129), "Devices", "Devices", 0, "Id") }, paths: []string{"Devices[0].Id"}, msg: "is 129 characters, the limit is 128"},
		{
			name:   "device thing ARN is a certificate ARN, and every subscription naming it fails too",
			mutate: func(g any) { set(g, certArn, "Devices", "Devices", 0, "ThingArn") },
			paths:  []string{"Devices[0].ThingArn", "Subscriptions[1].Source", "Subscriptions[2].Target", "Subscriptions[3].Source", "Subscriptions[4].Target"},
			msg:    `does not start with "thing/"`,
		},
		{name: "device list element is null", mutate: func(g any) { set(g, []any{nil}, "Devices", "Devices") }, paths: []string{"Devices[0]", "Subscriptions[1].Source", "Subscriptions[2].Target", "Subscriptions[3].Source", "Subscriptions[4].Target"}, msg: "got null"},
		{
			name: "function qualified with $LATEST",
			mutate: func(g any) {
				set(g, strings.TrimSuffix(helloArn, "1")+"$LATEST", "Functions", "Functions", 0, "FunctionArn")
			},
			paths: []string{"Functions[0].FunctionArn", "Subscriptions[0].Source", "Subscriptions[1].Target", "Subscriptions[2].Source"},
			msg:   "$LATEST is not allowed",
		},
		{
			name: "duplicate function ARN",
			mutate: func(g any) {
				f := j(`{"Id": "hello-2", "FunctionArn": "` + helloArn + `", "Evergreen": {"Runtime": "python3.8", "Handler": "a.b", "CodeUri": "x"}}`)
				appendTo(g, f, "Functions", "Functions")
			},
			paths: []string{"Functions[1].FunctionArn"}, msg: "is already the FunctionArn of Functions[0]",
		},
		{name: "EncodingType", mutate: func(g any) { set(g, "xml", append(fnConfig, "EncodingType")...) }, paths: []string{"Functions[0].FunctionConfiguration.EncodingType"}, msg: `"xml" is not one of json, binary`},
		{
			name: "negative MemorySize on a NoContainer function",
			mutate: func(g any) {
				set(g, j(`{"IsolationMode": "NoContainer"}`), p("Execution")...)
				set(g, -1.0, append(fnConfig, "MemorySize")...)
			},
			paths: []string{"Functions[0].FunctionConfiguration.MemorySize"}, msg: "is -1; must be absent, 0 (no limit) or greater than 0 (KB)",
		},
		{
			name: "model without an Evergreen source",
			mutate: func(g any) {
				set(g, j(resources), "Resources")
				del(g, "Resources", "Resources", 2, "ResourceDataContainer", "S3MachineLearningModelResourceData", "Evergreen")
			},
			paths: []string{"Resources[2].ResourceDataContainer.S3MachineLearningModelResourceData.Evergreen"},
			msg:   "required: Evergreen cannot download from S3",
		},
		{name: "MemorySize zero in a container", mutate: func(g any) { set(g, 0.0, append(fnConfig, "MemorySize")...) }, paths: []string{"Functions[0].FunctionConfiguration.MemorySize"}, msg: "is 0; must be greater than 0 (KB)"},
		{name: "Timeout zero", mutate: func(g any) { set(g, 0.0, append(fnConfig, "Timeout")...) }, paths: []string{"Functions[0].FunctionConfiguration.Timeout"}, msg: "must be greater than 0"},
		{name: "Timeout above 900", mutate: func(g any) { set(g, 901.0, append(fnConfig, "Timeout")...) }, paths: []string{"Functions[0].FunctionConfiguration.Timeout"}, msg: "is 901 seconds, the limit is 900"},
		{name: "Timeout as a string", mutate: func(g any) { set(g, "3", append(fnConfig, "Timeout")...) }, paths: []string{"Functions[0].FunctionConfiguration.Timeout"}, msg: "want an integer, got a string"},
		{name: "Timeout with a fraction", mutate: func(g any) { set(g, 3.5, append(fnConfig, "Timeout")...) }, paths: []string{"Functions[0].FunctionConfiguration.Timeout"}, msg: "want an integer, got 3.5"},
		{name: "Timeout out of range", raw: strings.Replace(string(base), `"Timeout": 3`, `"Timeout": 99999999999999999999`, 1), paths: []string{"Functions[0].FunctionConfiguration.Timeout"}, msg: "out of range"},
		{name: "IsolationMode misspelt", mutate: func(g any) { set(g, j(`{"IsolationMode": "Container"}`), p("Execution")...) }, paths: []string{"Functions[0].FunctionConfiguration.Environment.Execution.IsolationMode"}, msg: `"Container" is not one of GreengrassContainer, NoContainer`},
		{
			name: "negative Uid and Gid",
			mutate: func(g any) {
				set(g, j(`{"RunAs": {"Uid": -1}}`), p("Execution")...)
				set(g, j(`{"Gid": -2}`), "Functions", "DefaultConfig", "Execution", "RunAs")
			},
			paths: []string{"Functions.DefaultConfig.Execution.RunAs.Gid", "Functions[0].FunctionConfiguration.Environment.Execution.RunAs.Uid"}, msg: "is -2; must be 0 or greater",
		},
		{name: "variable value not a string", mutate: func(g any) { set(g, 5.0, p("Variables", "HELLO_TOPIC")...) }, paths: []string{"Functions[0].FunctionConfiguration.Environment.Variables.HELLO_TOPIC"}, msg: "want a string, got the number 5"},
		{name: "variable name with =", mutate: func(g any) { set(g, "x", p("Variables", "A=B")...) }, paths: []string{"Functions[0].FunctionConfiguration.Environment.Variables.A=B"}, msg: "cannot contain '='"},
		{
			name:   "AccessSysfs on a NoContainer function",
			mutate: func(g any) { noContainer(g); set(g, true, p("AccessSysfs")...) },
			paths:  []string{"Functions[0].FunctionConfiguration.Environment.AccessSysfs"}, msg: "only applies to GreengrassContainer",
		},
		{
			name: "resource access policy names no resource",
			mutate: func(g any) {
				set(g, j(resources), "Resources")
				set(g, j(`[{"ResourceId": "data", "Permission": "ro"}, {"ResourceId": "ghost", "Permission": "rw"}]`), p("ResourceAccessPolicies")...)
			},
			paths: []string{"Functions[0].FunctionConfiguration.Environment.ResourceAccessPolicies[1].ResourceId"}, msg: `"ghost" names no resource of this group`,
		},
		{
			name: "resource access policy permission and missing id",
			mutate: func(g any) {
				set(g, j(resources), "Resources")
				set(g, j(`[{"ResourceId": "data", "Permission": "rx"}, {"Permission": "ro"}, {"ResourceId": "data"}]`), p("ResourceAccessPolicies")...)
			},
			paths: []string{
				"Functions[0].FunctionConfiguration.Environment.ResourceAccessPolicies[0].Permission",
				"Functions[0].FunctionConfiguration.Environment.ResourceAccessPolicies[1].ResourceId",
				"Functions[0].FunctionConfiguration.Environment.ResourceAccessPolicies[2].ResourceId",
			},
			msg: `"rx" is not one of ro, rw`,
		},
		{
			name: "local resources on a NoContainer function, model without owner",
			mutate: func(g any) {
				noContainer(g)
				set(g, j(resources), "Resources")
				set(g, j(`[{"ResourceId": "data", "Permission": "ro"}, {"ResourceId": "tty", "Permission": "rw"}, {"ResourceId": "model", "Permission": "ro"}, {"ResourceId": "secret"}]`), p("ResourceAccessPolicies")...)
			},
			paths: []string{
				"Functions[0].FunctionConfiguration.Environment.ResourceAccessPolicies[0].ResourceId",
				"Functions[0].FunctionConfiguration.Environment.ResourceAccessPolicies[1].ResourceId",
				"Functions[0].FunctionConfiguration.Environment.ResourceAccessPolicies[2].ResourceId",
			},
			msg: "only GreengrassContainer functions can attach local resources",
		},
		{
			name: "/dev/shm attached read-only",
			mutate: func(g any) {
				setResources(g, `[{"Id": "shm", "Name": "shm", "ResourceDataContainer": {"LocalVolumeResourceData": {"SourcePath": "/dev/shm", "DestinationPath": "/dev/shm"}}}]`)
				set(g, j(`[{"ResourceId": "shm", "Permission": "ro"}]`), p("ResourceAccessPolicies")...)
			},
			paths: []string{"Functions[0].FunctionConfiguration.Environment.ResourceAccessPolicies[0].Permission"}, msg: "must be attached rw",
		},
		{
			name: "resource with two kinds of data, and one with none",
			mutate: func(g any) {
				setResources(g, `[
					{"Id": "a", "Name": "a", "ResourceDataContainer": {"LocalDeviceResourceData": {"SourcePath": "/dev/i2c-1"}, "LocalVolumeResourceData": {"SourcePath": "/srv", "DestinationPath": "/srv"}}},
					{"Id": "b", "Name": "b", "ResourceDataContainer": {}},
					{"Id": "c", "Name": "c"}
				]`)
			},
			paths: []string{"Resources[0].ResourceDataContainer", "Resources[1].ResourceDataContainer", "Resources[2].ResourceDataContainer"},
			msg:   "holds LocalDeviceResourceData and LocalVolumeResourceData",
		},
		{
			name: "device resource outside /dev, volume from /sys to a relative path, volume from /var",
			mutate: func(g any) {
				setResources(g, `[
					{"Id": "a", "Name": "a", "ResourceDataContainer": {"LocalDeviceResourceData": {"SourcePath": "/tmp/tty"}}},
					{"Id": "b", "Name": "b", "ResourceDataContainer": {"LocalVolumeResourceData": {"SourcePath": "/opt/../sys/class/gpio", "DestinationPath": "gpio"}}},
					{"Id": "c", "Name": "c", "ResourceDataContainer": {"LocalVolumeResourceData": {"SourcePath": "/var/lib/x", "DestinationPath": "/x"}}},
					{"Id": "d", "Name": "d", "ResourceDataContainer": {"LocalDeviceResourceData": {"SourcePath": "dev/ttyS0"}}}
				]`)
			},
			paths: []string{
				"Resources[0].ResourceDataContainer.LocalDeviceResourceData.SourcePath",
				"Resources[1].ResourceDataContainer.LocalVolumeResourceData.SourcePath",
				"Resources[1].ResourceDataContainer.LocalVolumeResourceData.DestinationPath",
				"Resources[2].ResourceDataContainer.LocalVolumeResourceData.SourcePath",
				"Resources[3].ResourceDataContainer.LocalDeviceResourceData.SourcePath",
			},
			msg: `"/tmp/tty" is not under /dev`,
		},
		{
			name: "duplicate resource name and id",
			mutate: func(g any) {
				setResources(g, `[
					{"Id": "a", "Name": "same", "ResourceDataContainer": {"LocalDeviceResourceData": {"SourcePath": "/dev/i2c-1"}}},
					{"Id": "a", "Name": "same", "ResourceDataContainer": {"LocalDeviceResourceData": {"SourcePath": "/dev/i2c-2"}}}
				]`)
			},
			paths: []string{"Resources[1].Id", "Resources[1].Name"}, msg: "is already the Id of Resources[0]",
		},
		{
			name: "secret referenced twice, bad model URI and owner",
			mutate: func(g any) {
				setResources(g, `[
					{"Id": "s1", "Name": "s1", "ResourceDataContainer": {"SecretsManagerSecretResourceData": {"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:k-AbCdEf"}}},
					{"Id": "s2", "Name": "s2", "ResourceDataContainer": {"SecretsManagerSecretResourceData": {"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:k-AbCdEf", "AdditionalStagingLabelsToDownload": [""]}}},
					{"Id": "m", "Name": "m", "ResourceDataContainer": {"S3MachineLearningModelResourceData": {"DestinationPath": "/ml", "S3Uri": "https://bucket/m.zip", "OwnerSetting": {"GroupPermission": "all"}, "Evergreen": {"Url": "https://models.example.com/m.zip", "Sha256": "`+strings.Repeat("b", 64)+`"}}}},
					{"Id": "sm", "Name": "sm", "ResourceDataContainer": {"SageMakerMachineLearningModelResourceData": {"DestinationPath": "/sm", "SageMakerJobArn": "arn:aws:sagemaker:us-east-1:123456789012:model/x"}}}
				]`)
			},
			paths: []string{
				"Resources[1].ResourceDataContainer.SecretsManagerSecretResourceData.ARN",
				"Resources[1].ResourceDataContainer.SecretsManagerSecretResourceData.AdditionalStagingLabelsToDownload[0]",
				"Resources[2].ResourceDataContainer.S3MachineLearningModelResourceData.S3Uri",
				"Resources[2].ResourceDataContainer.S3MachineLearningModelResourceData.OwnerSetting.GroupOwner",
				"Resources[2].ResourceDataContainer.S3MachineLearningModelResourceData.OwnerSetting.GroupPermission",
				"Resources[3].ResourceDataContainer.SageMakerMachineLearningModelResourceData.SageMakerJobArn",
			},
			msg: "a secret may be referenced once per group",
		},
		{
			name: "subscription target names an unknown thing",
			mutate: func(g any) {
				set(g, "arn:aws:iot:us-east-1:123456789012:thing/x", "Subscriptions", "Subscriptions", 2, "Target")
			},
			paths: []string{"Subscriptions[2].Target"}, msg: `"arn:aws:iot:us-east-1:123456789012:thing/x" names no device, function or connector of this group`,
		},
		{
			name: "subscription names another alias of a group function",
			mutate: func(g any) {
				set(g, strings.TrimSuffix(helloArn, "1")+"prod", "Subscriptions", "Subscriptions", 0, "Source")
			},
			paths: []string{"Subscriptions[0].Source"}, msg: `(the group has "` + helloArn + `"; use the same version or alias)`,
		},
		{name: "subscription target Cloud", mutate: func(g any) { set(g, "Cloud", "Subscriptions", "Subscriptions", 0, "Target") }, paths: []string{"Subscriptions[0].Target"}, msg: `"Cloud" is not a thing, function or connector ARN`},
		{name: "subscription source names an unknown connector", mutate: func(g any) {
			set(g, "arn:aws:greengrass:us-east-1::/connectors/SNS/versions/1", "Subscriptions", "Subscriptions", 0, "Source")
		}, paths: []string{"Subscriptions[0].Source"}, msg: "names no device, function or connector"},
		{name: "subject with # inside", mutate: func(g any) { set(g, "hello/#/world", "Subscriptions", "Subscriptions", 0, "Subject") }, paths: []string{"Subscriptions[0].Subject"}, msg: "only allowed as the last level"},
		{name: "subject with 8 slashes", mutate: func(g any) { set(g, "a/b/c/d/e/f/g/h/i", "Subscriptions", "Subscriptions", 0, "Subject") }, paths: []string{"Subscriptions[0].Subject"}, msg: "filter has 8 slashes, the limit is 7"},
		{
			name: "subscription missing Id, Subject and Target",
			mutate: func(g any) {
				s := []any{"Subscriptions", "Subscriptions", 3}
				del(g, append(s, "Id")...)
				del(g, append(s, "Subject")...)
				del(g, append(s, "Target")...)
			},
			paths: []string{"Subscriptions[3].Id", "Subscriptions[3].Subject", "Subscriptions[3].Target"}, msg: "required",
		},
		{name: "duplicate subscription Id", mutate: func(g any) { set(g, "hello-to-cloud", "Subscriptions", "Subscriptions", 1, "Id") }, paths: []string{"Subscriptions[1].Id"}, msg: "is already the Id of Subscriptions[0]"},
		{
			name: "connector ARN with an account, duplicate connector Id",
			mutate: func(g any) {
				set(g, j(`{"Connectors": [
					{"Id": "sns", "ConnectorArn": "arn:aws:greengrass:us-east-1:123456789012:/connectors/SNS/versions/4"},
					{"Id": "sns", "ConnectorArn": "arn:aws:greengrass:us-east-1::/connectors/SNS/versions/4", "Parameters": {"": "x"}}
				]}`), "Connectors")
			},
			paths: []string{"Connectors[0].ConnectorArn", "Connectors[1].Id", "Connectors[1].Parameters"}, msg: "account must be empty",
		},
		{
			name: "logger enums and Space",
			mutate: func(g any) {
				set(g, j(`[
					{"Id": "a", "Component": "Lambdas", "Level": "info", "Type": "Syslog"},
					{"Id": "b", "Component": "Lambda", "Level": "INFO", "Type": "AWSCloudWatch", "Space": 128},
					{"Id": "c", "Component": "Lambda", "Level": "INFO", "Type": "FileSystem", "Space": 0},
					{"Id": "d"}
				]`), "Loggers", "Loggers")
			},
			paths: []string{
				"Loggers[0].Component", "Loggers[0].Level", "Loggers[0].Type", "Loggers[1].Space", "Loggers[2].Space",
				"Loggers[3].Component", "Loggers[3].Level", "Loggers[3].Type",
			},
			msg: `"Lambdas" is not one of GreengrassSystem, Lambda`,
		},
		{name: "user function without Evergreen block", mutate: func(g any) { del(g, "Functions", "Functions", 0, "Evergreen") }, paths: []string{"Functions[0].Evergreen"}, msg: "required for user functions"},
		{
			name: "Evergreen block fields",
			mutate: func(g any) {
				set(g, j(`{"Runtime": "python3.6", "Handler": "hello", "CodeUri": "s3://bucket/code.zip", "CodeSha256": "ABC"}`), "Functions", "Functions", 0, "Evergreen")
			},
			paths: []string{"Functions[0].Evergreen.Runtime", "Functions[0].Evergreen.Handler", "Functions[0].Evergreen.CodeUri", "Functions[0].Evergreen.CodeSha256"},
			msg:   `"python3.6" is not a supported runtime; want python3.7 or later (python3.N), python2.7, nodejs12.x or later (nodejsN.x), nodejs8.10, java8, executable or go`,
		},
		{
			name: "Evergreen handler shape and file URI host",
			mutate: func(g any) {
				set(g, j(`{"Runtime": "nodejs12.x", "Handler": "index.", "CodeUri": "file://build-host/code.zip", "CodeSha256": "`+strings.Repeat("A", 64)+`"}`), "Functions", "Functions", 0, "Evergreen")
			},
			paths: []string{"Functions[0].Evergreen.Handler", "Functions[0].Evergreen.CodeUri", "Functions[0].Evergreen.CodeSha256"},
			msg:   `"index." is not <module>.<function>`,
		},
		{
			name: "https CodeUri needs CodeSha256",
			mutate: func(g any) {
				set(g, j(`{"Runtime": "nodejs12.x", "Handler": "index.handler", "CodeUri": "https://artifacts.example.com/code.zip?sig=1"}`), "Functions", "Functions", 0, "Evergreen")
			},
			paths: []string{"Functions[0].Evergreen.CodeSha256"},
			msg:   `required with an https:// CodeUri`,
		},
		{
			name: "model artifact source",
			mutate: func(g any) {
				setResources(g, `[{"Id": "model", "Name": "model", "ResourceDataContainer": {"S3MachineLearningModelResourceData": {"DestinationPath": "/ml", "S3Uri": "s3://models/m.zip",
					"Evergreen": {"Url": "http://insecure/m.zip", "Sha256": "abc", "Size": -1}}}}]`)
			},
			paths: []string{"Resources[0].ResourceDataContainer.S3MachineLearningModelResourceData.Evergreen.Url",
				"Resources[0].ResourceDataContainer.S3MachineLearningModelResourceData.Evergreen.Sha256",
				"Resources[0].ResourceDataContainer.S3MachineLearningModelResourceData.Evergreen.Size"},
			msg: `want https://host/path or file:///absolute/path`,
		},
		{
			name: "Evergreen block on a system function",
			mutate: func(g any) {
				appendTo(g, j(`{"Id": "spooler", "FunctionArn": "arn:aws:lambda:::function:GGCloudSpooler:1", "Evergreen": {"Runtime": "go", "Handler": "x", "CodeUri": "x"}}`), "Functions", "Functions")
			},
			paths: []string{"Functions[1].Evergreen"}, msg: "system functions are built into the core",
		},
		{
			name: "wrapped section with an unknown wrapper key",
			mutate: func(g any) {
				set(g, map[string]any{"Definition": get(g, "Devices"), "Arn": "x", "Foo": 1.0}, "Devices")
			},
			paths: []string{"Devices.Foo"}, msg: "unknown key in a definition-version wrapper",
		},
		{
			name: "wrapped section: paths leave out Definition",
			mutate: func(g any) {
				set(g, map[string]any{"Definition": get(g, "Subscriptions"), "Version": "v"}, "Subscriptions")
				set(g, "nowhere", "Subscriptions", "Definition", "Subscriptions", 1, "Target")
				set(g, 1.0, "Subscriptions", "Definition", "Bogus")
			},
			paths: []string{"Subscriptions.Bogus", "Subscriptions[1].Target"}, msg: "unknown key; allowed keys: Subscriptions",
		},
		{name: "wrapped Definition not an object", mutate: func(g any) { set(g, map[string]any{"Definition": []any{}}, "Loggers") }, paths: []string{"Loggers"}, msg: "want an object under Definition, got an array"},
		{
			name:   "Functions section of the wrong type: subscriptions naming its functions fail too",
			mutate: func(g any) { set(g, []any{}, "Functions") },
			paths:  []string{"Functions", "Subscriptions[0].Source", "Subscriptions[1].Target", "Subscriptions[2].Source"},
			msg:    "want an object, got an array",
		},
	}
	if len(tests) < 35 {
		t.Fatalf("only %d bad definitions", len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.raw)
			if tc.mutate != nil {
				var g any
				if err := json.Unmarshal(base, &g); err != nil {
					t.Fatal(err)
				}
				tc.mutate(g)
				var err error
				if data, err = json.Marshal(g); err != nil {
					t.Fatal(err)
				}
			}
			g, err := Parse(data)
			if err == nil {
				t.Fatalf("Parse accepted the definition:\n%s", data)
			}
			if g != nil {
				t.Errorf("Parse returned a group along with an error")
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError: %v", err, err)
			}
			if got := Paths(err); !slices.Equal(got, tc.paths) {
				t.Fatalf("paths = %q, want %q\nerror: %v", got, tc.paths, err)
			}
			if !strings.Contains(ve.Errors[0].Message, tc.msg) {
				t.Errorf("first message = %q, want it to contain %q", ve.Errors[0].Message, tc.msg)
			}
		})
	}
}

func TestExampleParses(t *testing.T) {
	g := mustParse(t, readFile(t, examplePath))
	if got := g.CoreThingName(); got != "evergreen-core" {
		t.Errorf("CoreThingName() = %q", got)
	}
	if got := g.DeviceThingNames(); !slices.Equal(got, []string{"sensor-1"}) {
		t.Errorf("DeviceThingNames() = %q", got)
	}
	f := g.FunctionByArn(helloArn)
	if f == nil || f.Id != "hello-world" || f.Evergreen.Runtime != "python3.8" || f.Evergreen.Handler != "hello_world.function_handler" {
		t.Fatalf("FunctionByArn(%q) = %+v", helloArn, f)
	}
	if g.FunctionByArn(strings.TrimSuffix(helloArn, ":1")) != nil {
		t.Error("FunctionByArn matched an unqualified ARN")
	}
	if f.FunctionConfiguration.Timeout == nil || *f.FunctionConfiguration.Timeout != 3 || !f.FunctionConfiguration.Pinned {
		t.Errorf("function configuration = %+v", f.FunctionConfiguration)
	}
	f.Id = "renamed" // FunctionByArn aliases the group
	if g.Functions.Functions[0].Id != "renamed" {
		t.Error("FunctionByArn returned a copy")
	}
	if n := len(g.Subscriptions.Subscriptions); n != 5 {
		t.Errorf("%d subscriptions, want 5", n)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, name := range []string{examplePath, "testdata/full.json"} {
		t.Run(name, func(t *testing.T) {
			g := mustParse(t, readFile(t, name))
			out, err := Marshal(g)
			if err != nil {
				t.Fatal(err)
			}
			back := mustParse(t, out)
			if !reflect.DeepEqual(g, back) {
				t.Fatalf("Parse(Marshal(g)) differs from g\n%s", out)
			}
			again, err := Marshal(back)
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(out) {
				t.Fatalf("Marshal is not canonical:\n%s\n---\n%s", out, again)
			}
			if strings.Contains(string(out), "Definition") {
				t.Error("Marshal wrote a wrapped section")
			}
		})
	}
}

func TestFullExampleFields(t *testing.T) {
	g := mustParse(t, readFile(t, "testdata/full.json"))
	if g.GroupId == "" || g.GroupVersionId == "" || g.Name != "factory-line-7" {
		t.Errorf("top-level fields: %q %q %q", g.GroupId, g.GroupVersionId, g.Name)
	}
	reader := g.FunctionByArn("arn:aws:lambda:eu-west-1:123456789012:function:serial-reader:prod")
	env := reader.FunctionConfiguration.Environment
	if len(env.ResourceAccessPolicies) != 4 || env.ResourceAccessPolicies[0] != (ResourceAccessPolicy{ResourceId: "serial", Permission: "rw"}) {
		t.Errorf("policies = %+v", env.ResourceAccessPolicies)
	}
	if env.Execution.RunAs.Uid != nil || *env.Execution.RunAs.Gid != 20 {
		t.Errorf("RunAs = %+v", env.Execution.RunAs)
	}
	infer := g.FunctionByArn("arn:aws:lambda:eu-west-1:123456789012:function:infer:3")
	if u := infer.FunctionConfiguration.Environment.Execution.RunAs.Uid; u == nil || *u != 0 {
		t.Errorf("Uid 0 (root) must survive as a set value, got %v", u)
	}
	modes := map[string]string{
		"serial-reader:prod": GreengrassContainer,
		"infer:3":            NoContainer,
		"report:7":           GreengrassContainer,
	}
	for suffix, want := range modes {
		f := g.FunctionByArn("arn:aws:lambda:eu-west-1:123456789012:function:" + suffix)
		if got := g.IsolationMode(f); got != want {
			t.Errorf("IsolationMode(%s) = %s, want %s", suffix, got, want)
		}
	}
	sm := g.Resources.Resources[5].ResourceDataContainer.SecretsManagerSecretResourceData
	if sm == nil || !slices.Equal(sm.AdditionalStagingLabelsToDownload, []string{"previous", "canary"}) {
		t.Errorf("secret = %+v", sm)
	}
	if p := g.Connectors.Connectors[0].Parameters["IsolationMode"]; p != "NoContainer" {
		t.Errorf("connector parameters = %v", g.Connectors.Connectors[0].Parameters)
	}
	if s := g.Loggers.Loggers[0].Space; s == nil || *s != 1024 {
		t.Errorf("logger space = %v", s)
	}
	if g.Loggers.Loggers[1].Space != nil {
		t.Error("absent Space decoded as set")
	}
}

// TestWrappedFormAccepted wraps every section of the example the way
// `aws greengrass get-*-definition-version` prints it.
func TestWrappedFormAccepted(t *testing.T) {
	base := readFile(t, examplePath)
	var m map[string]any
	if err := json.Unmarshal(base, &m); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"Core", "Functions", "Subscriptions", "Devices", "Loggers"} {
		m[s] = map[string]any{
			"Arn":               "arn:aws:greengrass:us-east-1:123456789012:/greengrass/definition/x/1/versions/2",
			"CreationTimestamp": "2020-01-02T03:04:05.678Z",
			"Definition":        m[s],
			"Id":                "1",
			"Version":           "2",
		}
	}
	wrapped, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mustParse(t, wrapped), mustParse(t, base); !reflect.DeepEqual(got, want) {
		t.Fatalf("wrapped form parses differently:\n%+v\n%+v", got, want)
	}
}

func TestNull(t *testing.T) {
	base := string(readFile(t, examplePath))
	// null stands for a left-out object, list or map ...
	var m map[string]any
	if err := json.Unmarshal([]byte(base), &m); err != nil {
		t.Fatal(err)
	}
	set(m, nil, append(slices.Clone(fnConfig), "Environment")...)
	set(m, nil, "Loggers")
	set(m, nil, "Devices", "Devices")
	set(m, nil, "Subscriptions")
	set(m, nil, "Functions", "DefaultConfig")
	ok, _ := json.Marshal(m)
	g := mustParse(t, ok)
	if g.Loggers != nil || g.Subscriptions != nil || g.Functions.DefaultConfig != nil || g.Functions.Functions[0].FunctionConfiguration.Environment != nil {
		t.Errorf("null objects decoded as present: %+v", g)
	}
	if g.Devices == nil || g.Devices.Devices != nil {
		t.Errorf("Devices = %+v, want a section with no devices", g.Devices)
	}
	// ... but a scalar must be written out or left out.
	bad := strings.Replace(base, `"SyncShadow": false`, `"SyncShadow": null`, 1)
	bad = strings.Replace(bad, `"Timeout": 3`, `"Timeout": null`, 1)
	_, err := Parse([]byte(bad))
	if got, want := Paths(err), []string{"Core.Cores[0].SyncShadow", "Functions[0].FunctionConfiguration.Timeout"}; !slices.Equal(got, want) {
		t.Fatalf("paths %q, want %q (%v)", got, want, err)
	}
	if !strings.Contains(err.Error(), "want a boolean, got null") {
		t.Errorf("error = %v", err)
	}
}

func TestValidationErrorText(t *testing.T) {
	err := (&ValidationError{Errors: []FieldError{
		{Path: "Subscriptions[3].Target", Message: "bad"},
		{Path: "", Message: "file"},
		{Path: "Core.Cores", Message: "worse"},
	}}).Error()
	if want := "Subscriptions[3].Target: bad; file; Core.Cores: worse"; err != want {
		t.Fatalf("Error() = %q, want %q", err, want)
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	if err := (*Group)(nil).Validate(); err == nil {
		t.Error("nil group validated")
	}
	if got := Paths((&Group{}).Validate()); !slices.Equal(got, []string{"Core"}) {
		t.Errorf("empty group: paths %q", got)
	}
	uid := -5
	g := mustParse(t, readFile(t, examplePath))
	g.Functions.Functions[0].FunctionConfiguration.Environment.Execution = &FunctionExecutionConfig{RunAs: &FunctionRunAsConfig{Uid: &uid}}
	g.Subscriptions.Subscriptions[4].Target = "cloud"
	err := g.Validate()
	if got, want := Paths(err), []string{"Functions[0].FunctionConfiguration.Environment.Execution.RunAs.Uid"}; !slices.Equal(got, want) {
		t.Fatalf("paths %q, want %q (%v)", got, want, err)
	}
	if _, err := Marshal(g); err == nil {
		t.Error("Marshal wrote an invalid group")
	}
	if _, err := Marshal(nil); err == nil {
		t.Error("Marshal(nil) succeeded")
	}
}

func TestHelpersOnEmptyGroup(t *testing.T) {
	var g *Group
	if g.CoreThingName() != "" || g.DeviceThingNames() != nil || g.FunctionByArn(helloArn) != nil {
		t.Error("helpers on a nil group returned something")
	}
	e := &Group{Core: &CoreDefinitionVersion{Cores: []Core{{ThingArn: "bad"}}}}
	if e.CoreThingName() != "" {
		t.Error("CoreThingName of a malformed ARN")
	}
}

func TestParseTooLarge(t *testing.T) {
	_, err := Parse(make([]byte, MaxFileSize+1))
	if err == nil || !strings.Contains(err.Error(), "the limit is") {
		t.Fatalf("Parse of an oversized file: %v", err)
	}
}

// The quotas: one over is an error at the list's path naming the limit; at
// the limit the group is valid.

func quotaBase(t *testing.T) *Group {
	return mustParse(t, readFile(t, examplePath))
}

func checkQuota(t *testing.T, g *Group, wantPath, wantMsg string) {
	t.Helper()
	err := g.Validate()
	if wantPath == "" {
		if err != nil {
			t.Fatalf("at the limit: %v", clip(err))
		}
	} else {
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Path != wantPath || !strings.Contains(ve.Errors[0].Message, wantMsg) {
			t.Fatalf("want one error %s: %q, got %v", wantPath, wantMsg, clip(err))
		}
	}
	// The same through the file format.
	data, jerr := json.Marshal(g)
	if jerr != nil {
		t.Fatal(jerr)
	}
	_, perr := Parse(data)
	if got := Paths(perr); (wantPath == "" && perr != nil) || (wantPath != "" && !slices.Equal(got, []string{wantPath})) {
		t.Fatalf("Parse: paths %q, want %q", got, wantPath)
	}
}

func clip(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := err.Error()
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

func addDevices(g *Group, n int) {
	for i := len(g.Devices.Devices); i < n; i++ {
		name := "d-" + strconv.Itoa(i)
		g.Devices.Devices = append(g.Devices.Devices, Device{Id: name, ThingArn: "arn:aws:iot:us-east-1:123456789012:thing/" + name, CertificateArn: certArn})
	}
}

func TestQuotaDevices(t *testing.T) {
	g := quotaBase(t)
	addDevices(g, MaxDevices)
	checkQuota(t, g, "", "")
	addDevices(g, MaxDevices+1)
	checkQuota(t, g, "Devices", "2501 devices, the limit is 2500")
}

func addSubscriptions(g *Group, n int, source, target string) {
	for i := len(g.Subscriptions.Subscriptions); i < n; i++ {
		g.Subscriptions.Subscriptions = append(g.Subscriptions.Subscriptions, Subscription{Id: "s-" + strconv.Itoa(i), Source: source, Subject: "load/" + strconv.Itoa(i), Target: target})
	}
}

func TestQuotaSubscriptions(t *testing.T) {
	g := quotaBase(t)
	addSubscriptions(g, MaxSubscriptions, helloArn, sensorArn)
	checkQuota(t, g, "", "")
	addSubscriptions(g, MaxSubscriptions+1, helloArn, sensorArn)
	checkQuota(t, g, "Subscriptions", "10001 subscriptions, the limit is 10000")
}

func TestQuotaCloudSourceSubscriptions(t *testing.T) {
	g := quotaBase(t)
	g.Subscriptions.Subscriptions = nil
	addSubscriptions(g, MaxCloudSourceSubscriptions, "cloud", helloArn)
	checkQuota(t, g, "", "")
	addSubscriptions(g, MaxCloudSourceSubscriptions+1, "cloud", helloArn)
	checkQuota(t, g, "Subscriptions", `51 subscriptions have Source "cloud", the limit is 50`)
}

func TestQuotaFunctions(t *testing.T) {
	g := quotaBase(t)
	add := func(n int) {
		for i := len(g.Functions.Functions); i < n; i++ {
			g.Functions.Functions = append(g.Functions.Functions, Function{
				Id:          "f-" + strconv.Itoa(i),
				FunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:f-" + strconv.Itoa(i) + ":1",
				Evergreen:   &FunctionExtension{Runtime: "python3.8", Handler: "f.handler", CodeUri: "f"},
			})
		}
	}
	add(MaxFunctions)
	checkQuota(t, g, "", "")
	add(MaxFunctions + 1)
	checkQuota(t, g, "Functions", "201 functions, the limit is 200")
}

func addResources(g *Group, n int) {
	if g.Resources == nil {
		g.Resources = &ResourceDefinitionVersion{}
	}
	for i := len(g.Resources.Resources); i < n; i++ {
		id := "r-" + strconv.Itoa(i)
		g.Resources.Resources = append(g.Resources.Resources, Resource{Id: id, Name: id, ResourceDataContainer: &ResourceDataContainer{
			LocalVolumeResourceData: &LocalVolumeResourceData{SourcePath: "/srv/" + id, DestinationPath: "/mnt/" + id},
		}})
	}
}

func TestQuotaResources(t *testing.T) {
	g := quotaBase(t)
	addResources(g, MaxResources)
	checkQuota(t, g, "", "")
	addResources(g, MaxResources+1)
	checkQuota(t, g, "Resources", "201 resources, the limit is 200")
}

func TestQuotaResourcesPerFunction(t *testing.T) {
	g := quotaBase(t)
	addResources(g, MaxResourcesPerFunction+1)
	env := g.Functions.Functions[0].FunctionConfiguration.Environment
	attach := func(n int) {
		for i := len(env.ResourceAccessPolicies); i < n; i++ {
			env.ResourceAccessPolicies = append(env.ResourceAccessPolicies, ResourceAccessPolicy{ResourceId: "r-" + strconv.Itoa(i), Permission: "ro"})
		}
	}
	attach(MaxResourcesPerFunction)
	checkQuota(t, g, "", "")
	attach(MaxResourcesPerFunction + 1)
	checkQuota(t, g, "Functions[0].FunctionConfiguration.Environment.ResourceAccessPolicies", "21 resource access policies, the limit is 20 resources per function")
}

func FuzzParse(f *testing.F) {
	f.Add(readFile(f, examplePath))
	f.Add(readFile(f, "testdata/full.json"))
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"Core": null}`, `{"Core": {"Definition": null}}`,
		`{"Core": {"Cores": [{"Id": "c", "Id": 1}]}}`,
		`{"Functions": {"Functions": [{"FunctionConfiguration": {"Timeout": 1e400, "MemorySize": -0}}]}}`,
		`{"Subscriptions": {"Subscriptions": [null, 1, "x", {"Subject": "#/a"}]}}`,
		`{"Resources": {"Resources": [{"ResourceDataContainer": {"LocalVolumeResourceData": {"SourcePath": "/tmp/../sys"}}}]}}`,
		`{"Functions": {"Functions": [{"FunctionConfiguration": {"Environment": {"Variables": {"a": "b", "a": 1}}}}]}}`,
		"{\"Name\": \"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Parse(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("error is not a non-empty *ValidationError: %v", err)
			}
			for _, fe := range ve.Errors {
				if fe.Message == "" {
					t.Fatalf("empty message at %q", fe.Path)
				}
			}
			return
		}
		out, err := Marshal(g)
		if err != nil {
			t.Fatalf("Marshal of a parsed group: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(g)): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(g, back) {
			t.Fatalf("round trip differs:\n%s", out)
		}
	})
}

func BenchmarkParseExample(b *testing.B) {
	data := readFile(b, "testdata/full.json")
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDocExampleIsTheExampleFile keeps the full example printed in
// docs/group-definition.md identical to the file the tests parse.
func TestDocExampleIsTheExampleFile(t *testing.T) {
	doc := string(readFile(t, "../../../docs/group-definition.md"))
	example := strings.TrimRight(string(readFile(t, examplePath)), "\n")
	if !strings.Contains(doc, "```json\n"+example+"\n```") {
		t.Fatal("docs/group-definition.md does not contain examples/hello-world/group.json verbatim in a json block")
	}
}

// python3.N (N >= 7) and nodejsN.x (N >= 12) are accepted besides v1's
// fixed names; older and malformed ones are refused naming the field.
func TestRuntimes(t *testing.T) {
	base := readFile(t, examplePath)
	for _, tc := range []struct {
		runtime string
		ok      bool
	}{
		{"python3.7", true}, {"python3.8", true}, {"python3.12", true}, {"python3.13", true},
		{"python2.7", true}, {"nodejs8.10", true}, {"nodejs12.x", true}, {"nodejs20.x", true},
		{"java8", true}, {"executable", true}, {"go", true},
		{"python3.6", false}, {"python3", false}, {"python4", false}, {"python4.0", false}, {"python3.07", false},
		{"python3.x", false}, {"nodejs10.x", false}, {"nodejs6.10", false}, {"nodejs20", false}, {"nodejs.x", false},
		{"nodejs020.x", false}, {"java11", false},
	} {
		var g any
		if err := json.Unmarshal(base, &g); err != nil {
			t.Fatal(err)
		}
		set(g, tc.runtime, "Functions", "Functions", 0, "Evergreen", "Runtime")
		if !strings.HasPrefix(tc.runtime, "python") {
			set(g, "index.handler", "Functions", "Functions", 0, "Evergreen", "Handler")
		}
		data, _ := json.Marshal(g)
		_, err := Parse(data)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s refused: %v", tc.runtime, err)
		case !tc.ok && (err == nil || !slices.Equal(Paths(err), []string{"Functions[0].Evergreen.Runtime"}) || !strings.Contains(err.Error(), `"`+tc.runtime+`" is not a supported runtime`)):
			t.Errorf("%s: %v, want it refused at Functions[0].Evergreen.Runtime", tc.runtime, err)
		}
		if got := RuntimeSupported(tc.runtime); got != tc.ok {
			t.Errorf("RuntimeSupported(%q) = %v", tc.runtime, got)
		}
	}
}

// MemorySize on a NoContainer function is an Evergreen extension (a cgroup
// memory limit): accepted, from the function or the group default.
func TestNoContainerMemorySize(t *testing.T) {
	base := readFile(t, examplePath)
	for name, mutate := range map[string]func(g any){
		"own mode":      func(g any) { set(g, j(`{"IsolationMode": "NoContainer"}`), p("Execution")...) },
		"group default": func(g any) { set(g, "NoContainer", "Functions", "DefaultConfig", "Execution", "IsolationMode") },
	} {
		var g any
		if err := json.Unmarshal(base, &g); err != nil {
			t.Fatal(err)
		}
		mutate(g)
		data, _ := json.Marshal(g)
		pg, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f := &pg.Functions.Functions[0]
		if pg.IsolationMode(f) != NoContainer || f.FunctionConfiguration.MemorySize == nil || *f.FunctionConfiguration.MemorySize != 16384 {
			t.Errorf("%s: mode %s, MemorySize %v", name, pg.IsolationMode(f), f.FunctionConfiguration.MemorySize)
		}
	}
}
