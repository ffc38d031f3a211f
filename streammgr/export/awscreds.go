package export

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// The AWS exports take their credentials from the chain the AWS SDKs
// document, in its order: the environment, the shared credentials and
// config files, a container credentials endpoint, the EC2 instance role.
// It is resolved here rather than by the SDK's config package because that
// package links the STS, SSO, SSO-OIDC and sign-in clients, whose endpoint
// tables and schemas cost ~0.6 MB of heap at init in every process of the
// multi-call binary. Those clients are what the profiles refused below
// (SSO, web identity, assume role, credential_process) need; a profile of
// that kind is an error that says so, not a silent fall to the next
// source. The container and instance-metadata providers are the SDK's
// own, which carry no tables.

// credentialsExpiryWindow renews expiring credentials this long before
// they expire, so no request is signed with a key that dies in flight.
const credentialsExpiryWindow = 5 * time.Minute

// containerCredentialsTimeout bounds one request to a container
// credentials endpoint: the agent is on the host, a hung one must not
// hold every export's first send.
const containerCredentialsTimeout = 5 * time.Second

// The hosts a plain-HTTP container credentials endpoint may have, besides
// loopback: the ECS agent and the EKS Pod Identity agent.
var containerHosts = []net.IP{
	net.ParseIP("169.254.170.2"),
	net.ParseIP("169.254.170.23"),
	net.ParseIP("fd00:ec2::23"),
}

// loadAWSConfig returns the region and credentials of the AWS exports.
// The region is region when not empty, else AWS_REGION,
// AWS_DEFAULT_REGION or the shared profile's region. Credentials are
// cached, and renewed before they expire.
func loadAWSConfig(ctx context.Context, region string) (aws.Config, error) {
	p, err := loadSharedProfile()
	if err != nil {
		return aws.Config{}, err
	}
	if region == "" {
		region = firstEnv("AWS_REGION", "AWS_DEFAULT_REGION")
	}
	if region == "" {
		region = p.values["region"]
	}
	if region == "" {
		return aws.Config{}, fmt.Errorf("no AWS region: set evergreen.streams.aws.region, AWS_REGION or region in profile %q of %s", p.name, p.configFile)
	}
	provider, err := credentialChain(ctx, p)
	if err != nil {
		return aws.Config{}, err
	}
	return aws.Config{
		Region: region,
		Credentials: aws.NewCredentialsCache(provider, func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = credentialsExpiryWindow
		}),
		// The exporter retries with its own backoff; an SDK client made
		// from this configuration retrying inside one attempt would only
		// hide the failure from the status.
		RetryMaxAttempts: 1,
	}, nil
}

// credentialChain picks the first source of p's environment that is
// configured, the way the SDK's default chain does: a configured source
// that fails is an error, not a reason to try the next.
func credentialChain(ctx context.Context, p sharedProfile) (aws.CredentialsProvider, error) {
	var tried []string

	id, secret := firstEnv("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"), firstEnv("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY")
	if id != "" && secret != "" {
		return static(id, secret, os.Getenv("AWS_SESSION_TOKEN"), "environment"), nil
	}
	tried = append(tried, "the environment ("+halfKeys("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", id, secret)+")")
	if os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "" {
		return nil, fmt.Errorf("AWS credentials: AWS_WEB_IDENTITY_TOKEN_FILE is set, and web identity (STS AssumeRoleWithWebIdentity) is not supported by the stream manager: %s", whatToDo)
	}

	if err := p.unsupported(); err != nil {
		return nil, err
	}
	id, secret = p.values["aws_access_key_id"], p.values["aws_secret_access_key"]
	if id != "" && secret != "" {
		return static(id, secret, p.values["aws_session_token"], fmt.Sprintf("profile %q in %s", p.name, p.from["aws_access_key_id"])), nil
	}
	if p.found {
		tried = append(tried, fmt.Sprintf("profile %q (%s)", p.name, halfKeys("aws_access_key_id", "aws_secret_access_key", id, secret)))
	} else {
		tried = append(tried, fmt.Sprintf("profile %q (in neither %s nor %s)", p.name, p.credentialsFile, p.configFile))
	}

	endpoint, err := containerEndpoint(ctx)
	if err != nil {
		return nil, err
	}
	if endpoint != "" {
		return containerCredentials(endpoint), nil
	}
	tried = append(tried, "a container endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI unset)")

	if strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		tried = append(tried, "EC2 instance metadata (AWS_EC2_METADATA_DISABLED=true)")
		return nil, fmt.Errorf("no AWS credentials: tried %s; %s", strings.Join(tried, ", "), whatToDo)
	}
	return instanceRole{Provider: ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = metadataClient() }),
		tried: strings.Join(tried, ", ")}, nil
}

// whatToDo ends an error about credentials the chain cannot use.
const whatToDo = "give the stream manager AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, " +
	"a profile (AWS_PROFILE) with aws_access_key_id and aws_secret_access_key, a container credentials endpoint or an EC2 instance role"

func static(id, secret, token, source string) aws.CredentialsProvider {
	return credentials.StaticCredentialsProvider{Value: aws.Credentials{
		AccessKeyID: id, SecretAccessKey: secret, SessionToken: token, Source: source}}
}

// halfKeys says which of a key pair is missing.
func halfKeys(idName, secretName, id, secret string) string {
	switch {
	case id != "":
		return idName + " without " + secretName
	case secret != "":
		return secretName + " without " + idName
	}
	return "no " + idName
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// containerEndpoint is the container credentials URL the environment
// names, "" for none. AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (ECS) is a
// path on the ECS agent; AWS_CONTAINER_CREDENTIALS_FULL_URI is any HTTPS
// URL, or plain HTTP to loopback or the ECS or EKS agents, whose
// credentials nobody on the way should read.
func containerEndpoint(ctx context.Context) (string, error) {
	if rel := os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"); rel != "" {
		return "http://169.254.170.2" + rel, nil
	}
	full := os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI")
	if full == "" {
		return "", nil
	}
	u, err := url.Parse(full)
	if err != nil || u.Hostname() == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("AWS credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI %q is not an http or https URL", full)
	}
	if u.Scheme == "https" {
		return full, nil
	}
	var ips []net.IP
	if ip := net.ParseIP(u.Hostname()); ip != nil {
		ips = []net.IP{ip}
	} else {
		ctx, cancel := context.WithTimeout(ctx, containerCredentialsTimeout)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupIPAddr(ctx, u.Hostname())
		if err != nil {
			return "", fmt.Errorf("AWS credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI %q: %w", full, err)
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	for _, ip := range ips {
		if !ip.IsLoopback() && !containsIP(containerHosts, ip) {
			return "", fmt.Errorf("AWS credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI %q: plain http is allowed only to loopback, 169.254.170.2, 169.254.170.23 or fd00:ec2::23 (%s is none)", full, ip)
		}
	}
	return full, nil
}

func containsIP(ips []net.IP, ip net.IP) bool {
	for _, x := range ips {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}

// containerCredentials asks endpoint for credentials, authorized by the
// token in AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (read again each time:
// EKS rotates it) or AWS_CONTAINER_AUTHORIZATION_TOKEN.
func containerCredentials(endpoint string) aws.CredentialsProvider {
	p := endpointcreds.New(endpoint, func(o *endpointcreds.Options) {
		o.HTTPClient = &http.Client{Timeout: containerCredentialsTimeout}
		if file := os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"); file != "" {
			o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
				b, err := os.ReadFile(file)
				// A trailing newline is an editor's, not the token's.
				return strings.TrimSpace(string(b)), err
			})
		} else {
			o.AuthorizationToken = os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN")
		}
	})
	return aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
		c, err := p.Retrieve(ctx)
		if err != nil {
			return c, fmt.Errorf("AWS credentials from the container endpoint %s: %w", endpoint, err)
		}
		return c, nil
	})
}

// metadataClient is the SDK's instance metadata client: IMDSv2 (a token,
// then the requests), its short timeouts (250 ms to connect, 500 ms for
// an answer's headers) so a gateway off EC2 does not stall, at
// AWS_EC2_METADATA_SERVICE_ENDPOINT when set, over IPv6 when
// AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE says so, without IMDSv1 when
// AWS_EC2_METADATA_V1_DISABLED is true.
func metadataClient() *imds.Client {
	return imds.New(imds.Options{}, func(o *imds.Options) {
		if strings.EqualFold(os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"), "IPv6") {
			o.EndpointMode = imds.EndpointModeStateIPv6
		}
		if strings.EqualFold(os.Getenv("AWS_EC2_METADATA_V1_DISABLED"), "true") {
			o.EnableFallback = aws.FalseTernary
		}
	})
}

// instanceRole is the EC2 instance role's credentials, the chain's last
// source: its failure names the sources tried before. The embedded
// provider's AdjustExpiresBy and HandleFailToRefresh stay visible to the
// credentials cache (old credentials are kept a while when the metadata
// service is briefly down).
type instanceRole struct {
	*ec2rolecreds.Provider
	tried string
}

func (r instanceRole) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := r.Provider.Retrieve(ctx)
	if err != nil {
		return c, fmt.Errorf("no AWS credentials: tried %s, then EC2 instance metadata: %w; %s", r.tried, err, whatToDo)
	}
	return c, nil
}

// sharedProfile is one profile of the shared config and credentials
// files, merged: a key in the credentials file wins.
type sharedProfile struct {
	name                        string // AWS_PROFILE, AWS_DEFAULT_PROFILE or "default"
	configFile, credentialsFile string
	found                       bool              // a section of either file is the profile's
	values                      map[string]string // key (lower case) -> value
	from                        map[string]string // key -> the file it was read from
}

// loadSharedProfile reads the profile the environment names from
// AWS_CONFIG_FILE (~/.aws/config) and AWS_SHARED_CREDENTIALS_FILE
// (~/.aws/credentials). A missing file is an empty one.
func loadSharedProfile() (sharedProfile, error) {
	p := sharedProfile{name: firstEnv("AWS_PROFILE", "AWS_DEFAULT_PROFILE"),
		configFile: os.Getenv("AWS_CONFIG_FILE"), credentialsFile: os.Getenv("AWS_SHARED_CREDENTIALS_FILE"),
		values: map[string]string{}, from: map[string]string{}}
	if p.name == "" {
		p.name = "default"
	}
	home, _ := os.UserHomeDir()
	if p.configFile == "" {
		p.configFile = filepath.Join(home, ".aws", "config")
	}
	if p.credentialsFile == "" {
		p.credentialsFile = filepath.Join(home, ".aws", "credentials")
	}
	for _, f := range []struct {
		path   string
		config bool
	}{{p.configFile, true}, {p.credentialsFile, false}} {
		data, err := os.ReadFile(f.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return p, fmt.Errorf("AWS shared file: %w", err)
		}
		values, found := iniProfile(string(data), p.name, f.config)
		p.found = p.found || found
		for k, v := range values {
			p.values[k], p.from[k] = v, f.path
		}
	}
	return p, nil
}

// unsupported is the error for a profile whose credentials come from a
// source the stream manager does not implement (each needs an AWS
// service client of its own), nil for the others. A role_arn always
// means assuming the role, with or without keys beside it; the other
// kinds only count when the profile has no keys, as in the SDK.
func (p sharedProfile) unsupported() error {
	hasKeys := p.values["aws_access_key_id"] != "" && p.values["aws_secret_access_key"] != ""
	for _, s := range []struct {
		key, kind    string
		evenWithKeys bool
	}{
		{"web_identity_token_file", "web identity (STS AssumeRoleWithWebIdentity)", false},
		{"role_arn", "assuming a role (STS AssumeRole)", true},
		{"sso_session", "IAM Identity Center (SSO)", false},
		{"sso_start_url", "IAM Identity Center (SSO)", false},
		{"sso_account_id", "IAM Identity Center (SSO)", false},
		{"login_session", "a console login session", false},
		{"credential_process", "an external process", false},
	} {
		if p.values[s.key] != "" && (s.evenWithKeys || !hasKeys) {
			return fmt.Errorf("AWS profile %q (%s in %s) takes its credentials from %s, which the stream manager does not support: %s",
				p.name, s.key, p.from[s.key], s.kind, whatToDo)
		}
	}
	return nil
}

// iniProfile returns the keys of profile name in an AWS shared file, and
// whether the file has a section for it: [profile name] in the config
// file ([default] too for the default profile), [name] in the
// credentials file. Keys are lower case. Lines that start with # or ;,
// comments after a blank, and the settings indented under a key without
// a value ("s3 =" then "  addressing_style = path") are skipped.
func iniProfile(data, name string, configFile bool) (map[string]string, bool) {
	values := map[string]string{}
	found, in, nested := false, false, false
	for _, line := range strings.Split(data, "\n") {
		indented := line != "" && (line[0] == ' ' || line[0] == '\t')
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			section, _, _ := strings.Cut(line[1:], "]")
			in = sectionProfile(strings.TrimSpace(section), configFile) == name
			found = found || in
			nested = false
			continue
		}
		if indented && nested {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		value = stripComment(strings.TrimSpace(value))
		nested = value == ""
		if in {
			values[strings.ToLower(strings.TrimSpace(key))] = value
		}
	}
	return values, found
}

// sectionProfile is the profile a section header names, "" for a section
// that is not a profile (sso-session, services).
func sectionProfile(section string, configFile bool) string {
	if !configFile {
		return section
	}
	if section == "default" {
		return section
	}
	if rest, ok := strings.CutPrefix(section, "profile"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
		return strings.TrimSpace(rest)
	}
	return ""
}

// stripComment cuts a value at a # or ; that follows a blank: keys,
// secrets and regions have no blanks.
func stripComment(v string) string {
	for i := 1; i < len(v); i++ {
		if (v[i] == '#' || v[i] == ';') && (v[i-1] == ' ' || v[i-1] == '\t') {
			return strings.TrimSpace(v[:i])
		}
	}
	return v
}
