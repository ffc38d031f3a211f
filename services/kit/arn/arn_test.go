package arn

import (
	"strings"
	"testing"
)

const (
	thingARN = "arn:aws:iot:us-east-1:123456789012:thing/sensor-1"
	certARN  = "arn:aws:iot:us-east-1:123456789012:cert/2f0f4b11e8c7dcbfd2ff6fa9e4dd4c92ba3a3a4a1e6e3c1e0d8c7b6a5f4e3d2c"
	fnARN    = "arn:aws:lambda:us-east-1:123456789012:function:hello-world:1"
	connARN  = "arn:aws:greengrass:us-east-1::/connectors/SNS/versions/4"
)

func TestParse(t *testing.T) {
	a, err := Parse("arn:aws-cn:iot:cn-north-1:123456789012:thing/a:b")
	if err != nil {
		t.Fatal(err)
	}
	want := ARN{Partition: "aws-cn", Service: "iot", Region: "cn-north-1", Account: "123456789012", Resource: "thing/a:b"}
	if a != want {
		t.Fatalf("Parse = %+v, want %+v", a, want)
	}
	if a.String() != "arn:aws-cn:iot:cn-north-1:123456789012:thing/a:b" {
		t.Fatalf("String() = %q", a.String())
	}
	bad := map[string]string{
		"":            "is not an ARN",
		"arn:aws:iot": "is not an ARN",
		"urn:aws:iot:us-east-1:123456789012:thing/x":   "is not an ARN",
		"arn:azure:iot:us-east-1:123456789012:thing/x": `partition "azure"`,
		"arn:aws::us-east-1:123456789012:thing/x":      "service is empty",
		"arn:aws:iot:US-EAST-1:123456789012:thing/x":   `region "US-EAST-1"`,
		"arn:aws:iot:us-east-1:12345:thing/x":          `account "12345" must be 12 digits`,
		"arn:aws:iot:us-east-1:123456789012:":          "resource is empty",
	}
	for in, want := range bad {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestValidThingName(t *testing.T) {
	for _, ok := range []string{"a", "sensor-1", "core_01:x", strings.Repeat("n", 128)} {
		if err := ValidThingName(ok); err != nil {
			t.Errorf("ValidThingName(%q) = %v", ok, err)
		}
	}
	bad := map[string]string{
		"":                       "thing name is empty",
		strings.Repeat("n", 129): "thing name is 129 characters, the limit is 128",
		"sensor 1":               `thing name "sensor 1" may only contain`,
		"sensor/1":               `thing name "sensor/1" may only contain`,
		"sënsor":                 `may only contain`,
	}
	for in, want := range bad {
		if err := ValidThingName(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidThingName(%q) = %v, want %q", in, err, want)
		}
	}
}

func TestParseThing(t *testing.T) {
	th, err := ParseThing(thingARN)
	if err != nil {
		t.Fatal(err)
	}
	if th.Name != "sensor-1" || th.Region != "us-east-1" || th.Account != "123456789012" {
		t.Fatalf("ParseThing = %+v", th)
	}
	name, err := ThingName("arn:aws:iot:eu-west-1:123456789012:thing/with:colon")
	if err != nil || name != "with:colon" {
		t.Fatalf("ThingName = %q, %v", name, err)
	}
	bad := map[string]string{
		"arn:aws:lambda:us-east-1:123456789012:thing/x": `service is "lambda", want "iot"`,
		"arn:aws:iot::123456789012:thing/x":             "region is empty",
		"arn:aws:iot:us-east-1::thing/x":                "account is empty",
		"arn:aws:iot:us-east-1:123456789012:cert/abc":   `does not start with "thing/"`,
		"arn:aws:iot:us-east-1:123456789012:thing/":     "thing name is empty",
		"arn:aws:iot:us-east-1:123456789012:thing/a b":  "may only contain",
		"arn:aws:iot:us-east-1:123456789012:thing/a/b":  "may only contain",
	}
	for in, want := range bad {
		if _, err := ParseThing(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseThing(%q) = %v, want error containing %q", in, err, want)
		}
		if _, err := ThingName(in); err == nil {
			t.Errorf("ThingName(%q) succeeded", in)
		}
	}
}

func TestParseCertificate(t *testing.T) {
	c, err := ParseCertificate(certARN)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.ID, "2f0f4b11") {
		t.Fatalf("ID = %q", c.ID)
	}
	for _, in := range []string{
		"arn:aws:iot:us-east-1:123456789012:cert/abc",
		"arn:aws:iot:us-east-1:123456789012:thing/abc",
		"arn:aws:iot:us-east-1:123456789012:cert/" + strings.Repeat("g", 64),
	} {
		if _, err := ParseCertificate(in); err == nil {
			t.Errorf("ParseCertificate(%q) succeeded", in)
		}
	}
}

func TestParseFunction(t *testing.T) {
	good := []struct {
		in              string
		name, qualifier string
		system          bool
		unqualified     string
	}{
		{fnARN, "hello-world", "1", false, "arn:aws:lambda:us-east-1:123456789012:function:hello-world"},
		{"arn:aws:lambda:us-east-1:123456789012:function:hello_world:prod", "hello_world", "prod", false, "arn:aws:lambda:us-east-1:123456789012:function:hello_world"},
		{"arn:aws:lambda:::function:GGCloudSpooler:1", "GGCloudSpooler", "1", true, "arn:aws:lambda:::function:GGCloudSpooler"},
		{"arn:aws:lambda:::function:GGShadowService", "GGShadowService", "", true, "arn:aws:lambda:::function:GGShadowService"},
	}
	for _, g := range good {
		f, err := ParseFunction(g.in)
		if err != nil {
			t.Errorf("ParseFunction(%q) = %v", g.in, err)
			continue
		}
		if f.Name != g.name || f.Qualifier != g.qualifier || f.System != g.system || f.Unqualified() != g.unqualified {
			t.Errorf("ParseFunction(%q) = %+v (unqualified %q)", g.in, f, f.Unqualified())
		}
		if IsSystemFunction(g.in) != g.system {
			t.Errorf("IsSystemFunction(%q) = %v", g.in, !g.system)
		}
	}
	bad := map[string]string{
		"arn:aws:lambda:us-east-1:123456789012:function:hello:$LATEST": "qualifier $LATEST is not allowed",
		"arn:aws:lambda:::function:GGCloudSpooler:$LATEST":             "qualifier $LATEST is not allowed",
		"arn:aws:lambda:us-east-1:123456789012:function:hello":         "no version or alias qualifier",
		"arn:aws:lambda:us-east-1:123456789012:function:hello:":        "qualifier is empty",
		"arn:aws:lambda:::function:hello:1":                            "only system functions",
		"arn:aws:lambda:us-east-1::function:hello:1":                   "region and account must both be given",
		"arn:aws:lambda:us-east-1:123456789012:layer:hello:1":          `does not start with "function:"`,
		"arn:aws:iot:us-east-1:123456789012:function:hello:1":          `service is "iot", want "lambda"`,
		"arn:aws:lambda:us-east-1:123456789012:function:he.llo:1":      `function name "he.llo"`,
		"arn:aws:lambda:us-east-1:123456789012:function:hello:1:2":     `qualifier "1:2"`,
		"arn:aws:lambda:us-east-1:123456789012:function::1":            `function name ""`,
	}
	for in, want := range bad {
		if _, err := ParseFunction(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseFunction(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestParseConnector(t *testing.T) {
	c, err := ParseConnector(connARN)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "SNS" || c.Version != "4" || c.Region != "us-east-1" {
		t.Fatalf("ParseConnector = %+v", c)
	}
	bad := map[string]string{
		"arn:aws:greengrass:us-east-1:123456789012:/connectors/SNS/versions/4": "account must be empty",
		"arn:aws:greengrass::/connectors/SNS/versions/4":                       "is not an ARN",
		"arn:aws:greengrass:us-east-1::/connectors/SNS":                        "is not /connectors/<Name>/versions/<n>",
		"arn:aws:greengrass:us-east-1::/connectors/SNS/versions/0":             `version "0" is not a positive integer`,
		"arn:aws:greengrass:us-east-1::/connectors/SNS/versions/v1":            `version "v1"`,
		"arn:aws:greengrass:us-east-1::/connectors//versions/1":                `connector name ""`,
		"arn:aws:lambda:us-east-1::/connectors/SNS/versions/1":                 `service is "lambda"`,
	}
	for in, want := range bad {
		if _, err := ParseConnector(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseConnector(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		in      string
		want    Kind
		wantErr string
	}{
		{thingARN, KindThing, ""},
		{fnARN, KindFunction, ""},
		{"arn:aws:lambda:::function:GGStreamManager:1", KindFunction, ""},
		{connARN, KindConnector, ""},
		{"cloud", KindCloud, ""},
		{"GGShadowService", KindShadowService, ""},
		{"", KindInvalid, "endpoint is empty"},
		{"Cloud", KindInvalid, `"Cloud" is not a thing, function or connector ARN, "cloud" or "GGShadowService"`},
		{"sensor-1", KindInvalid, "is not a thing, function or connector ARN"},
		{"arn:aws:lambda:us-east-1:123456789012:function:x:$LATEST", KindInvalid, "$LATEST"},
		{"arn:aws:iot:us-east-1:123456789012:thing/", KindInvalid, "thing name is empty"},
		{"arn:aws:greengrass:us-east-1::/connectors/SNS/versions/x", KindInvalid, `version "x"`},
		{"arn:aws:s3:::bucket", KindInvalid, `service "s3" cannot be a subscription endpoint`},
		{"arn:aws:iot:us-east-1:123:thing/x", KindInvalid, `account "123" must be 12 digits`},
	}
	for _, tc := range tests {
		k, err := ParseEndpoint(tc.in)
		if k != tc.want {
			t.Errorf("ParseEndpoint(%q) kind = %v, want %v", tc.in, k, tc.want)
		}
		if Classify(tc.in) != tc.want {
			t.Errorf("Classify(%q) = %v, want %v", tc.in, Classify(tc.in), tc.want)
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ParseEndpoint(%q) error = %v", tc.in, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseEndpoint(%q) error = %v, want it to contain %q", tc.in, err, tc.wantErr)
		}
	}
	if KindShadowService.String() != "shadow service" || Kind(42).String() != "Kind(42)" {
		t.Errorf("Kind.String: %q %q", KindShadowService, Kind(42))
	}
}
