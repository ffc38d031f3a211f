package export

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// credsEnv empties every variable the credential chain reads, points the
// shared files and HOME into a temporary directory, and disables instance
// metadata: each test turns on the one source it is about. It returns
// the paths of the shared config and credentials files (not yet written).
func credsEnv(t *testing.T) (configFile, credentialsFile string) {
	dir := t.TempDir()
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "AWS_EC2_METADATA_V1_DISABLED"} {
		t.Setenv(v, "")
	}
	t.Setenv("HOME", dir)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	configFile, credentialsFile = filepath.Join(dir, "config"), filepath.Join(dir, "credentials")
	t.Setenv("AWS_CONFIG_FILE", configFile)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", credentialsFile)
	return configFile, credentialsFile
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// retrieve loads the configuration as the exports do and retrieves its
// credentials once.
func retrieve(t *testing.T, region string) (aws.Config, aws.Credentials) {
	t.Helper()
	cfg, err := loadAWSConfig(context.Background(), region)
	if err != nil {
		t.Fatalf("loading the AWS configuration: %v", err)
	}
	c, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil {
		t.Fatalf("retrieving credentials: %v", err)
	}
	return cfg, c
}

func TestAWSCredentialsFromTheEnvironment(t *testing.T) {
	_, credentialsFile := credsEnv(t)
	// The environment comes before the shared files.
	writeFile(t, credentialsFile, "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = file-secret\n")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
	t.Setenv("AWS_SESSION_TOKEN", "env-token")
	t.Setenv("AWS_REGION", "eu-west-1")
	cfg, c := retrieve(t, "")
	if c.AccessKeyID != "AKIDENV" || c.SecretAccessKey != "env-secret" || c.SessionToken != "env-token" || cfg.Region != "eu-west-1" {
		t.Fatalf("credentials %+v in %q, want the environment's in eu-west-1", c, cfg.Region)
	}

	// The older names, and the configured region before the environment's.
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_ACCESS_KEY", "AKIDOLD")
	t.Setenv("AWS_SECRET_KEY", "old-secret")
	cfg, c = retrieve(t, "ap-south-1")
	if c.AccessKeyID != "AKIDOLD" || c.SecretAccessKey != "old-secret" || c.SessionToken != "" || cfg.Region != "ap-south-1" {
		t.Fatalf("credentials %+v in %q, want AWS_ACCESS_KEY's in ap-south-1", c, cfg.Region)
	}
}

func TestAWSCredentialsFromTheSharedCredentialsFile(t *testing.T) {
	configFile, credentialsFile := credsEnv(t)
	writeFile(t, credentialsFile, `# keys of the line
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = default-secret

[line-7]
; rotated monthly
AWS_Access_Key_ID=AKIDLINE7
aws_secret_access_key = line7/secret+key   # from the vault
aws_session_token = line7-token
`)
	writeFile(t, configFile, "[default]\nregion = us-east-2\n\n[profile line-7]\nregion = ca-central-1\n")

	cfg, c := retrieve(t, "")
	if c.AccessKeyID != "AKIDDEFAULT" || c.SecretAccessKey != "default-secret" || cfg.Region != "us-east-2" {
		t.Fatalf("credentials %+v in %q, want the default profile's in us-east-2", c, cfg.Region)
	}

	t.Setenv("AWS_PROFILE", "line-7")
	cfg, c = retrieve(t, "")
	if c.AccessKeyID != "AKIDLINE7" || c.SecretAccessKey != "line7/secret+key" || c.SessionToken != "line7-token" || cfg.Region != "ca-central-1" {
		t.Fatalf("credentials %+v in %q, want profile line-7's in ca-central-1", c, cfg.Region)
	}
}

func TestAWSCredentialsFromTheConfigFileProfile(t *testing.T) {
	configFile, credentialsFile := credsEnv(t)
	writeFile(t, configFile, `[default]
region = us-west-1

[profile edge]
region = eu-north-1
s3 =
  addressing_style = path
  aws_access_key_id = NOTAKEY
aws_access_key_id = AKIDEDGE
aws_secret_access_key = edge-secret

[sso-session edge]
sso_start_url = https://example.awsapps.com/start

[edge]
aws_access_key_id = AKIDNOTAPROFILE
`)
	t.Setenv("AWS_PROFILE", "edge")
	cfg, c := retrieve(t, "")
	if c.AccessKeyID != "AKIDEDGE" || c.SecretAccessKey != "edge-secret" || cfg.Region != "eu-north-1" {
		t.Fatalf("credentials %+v in %q, want [profile edge]'s in eu-north-1", c, cfg.Region)
	}

	// The credentials file's keys win over the config file's for the
	// same profile; the region still comes from the config file.
	writeFile(t, credentialsFile, "[edge]\naws_access_key_id = AKIDEDGE2\naws_secret_access_key = edge-secret-2\n")
	cfg, c = retrieve(t, "")
	if c.AccessKeyID != "AKIDEDGE2" || c.SecretAccessKey != "edge-secret-2" || cfg.Region != "eu-north-1" {
		t.Fatalf("credentials %+v in %q, want the credentials file's in eu-north-1", c, cfg.Region)
	}
}

// containerAgent is a container credentials endpoint (the ECS or EKS Pod
// Identity agent): it answers GET with the next of its credentials when
// the Authorization header carries token.
type containerAgent struct {
	srv *httptest.Server

	mu      sync.Mutex
	token   string
	answers []map[string]any // the last is repeated
	calls   int
}

func (a *containerAgent) setToken(token string) {
	a.mu.Lock()
	a.token = token
	a.mu.Unlock()
}

func newContainerAgent(t *testing.T, token string, answers ...map[string]any) *containerAgent {
	a := &containerAgent{token: token, answers: answers}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v2/credentials/evergreen" {
			t.Errorf("container endpoint: %s %s", r.Method, r.URL.Path)
		}
		a.mu.Lock()
		token := a.token
		a.mu.Unlock()
		if got := r.Header.Get("Authorization"); got != token {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]string{"code": "Unauthorized", "message": "bad token " + got})
			return
		}
		a.mu.Lock()
		answer := a.answers[min(a.calls, len(a.answers)-1)]
		a.calls++
		a.mu.Unlock()
		json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(a.srv.Close)
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", a.srv.URL+"/v2/credentials/evergreen")
	return a
}

func (a *containerAgent) served() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

func roleCredentials(key string, expires time.Time) map[string]any {
	return map[string]any{"AccessKeyId": key, "SecretAccessKey": key + "-secret", "Token": key + "-token",
		"Expiration": expires.UTC().Format(time.RFC3339)}
}

func TestAWSCredentialsFromAContainerEndpoint(t *testing.T) {
	credsEnv(t)
	t.Setenv("AWS_REGION", "us-west-2")
	agent := newContainerAgent(t, "Bearer task-token", roleCredentials("ASIATASK", time.Now().Add(time.Hour)))
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer task-token")
	_, c := retrieve(t, "")
	if c.AccessKeyID != "ASIATASK" || c.SecretAccessKey != "ASIATASK-secret" || c.SessionToken != "ASIATASK-token" || !c.CanExpire {
		t.Fatalf("credentials %+v, want the container endpoint's", c)
	}

	// The token file wins over the variable, read at each retrieval (EKS
	// rotates it), its trailing newline dropped.
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, "pod-token-1\n")
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tokenFile)
	agent.setToken("pod-token-1")
	if _, c = retrieve(t, ""); c.AccessKeyID != "ASIATASK" {
		t.Fatalf("credentials %+v with the token file", c)
	}

	// A wrong token is the endpoint's refusal, named.
	agent.setToken("pod-token-2")
	cfg, err := loadAWSConfig(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Credentials.Retrieve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "container endpoint "+agent.srv.URL) || !strings.Contains(err.Error(), "Unauthorized") {
		t.Fatalf("retrieving with a stale token: %v", err)
	}
}

// TestAWSContainerEndpointOverPlainHTTPOnlyToTheAgent: credentials over
// plain HTTP only from loopback or the ECS and EKS agents' addresses, so
// nobody between reads them.
func TestAWSContainerEndpointOverPlainHTTPOnlyToTheAgent(t *testing.T) {
	credsEnv(t)
	t.Setenv("AWS_REGION", "us-west-2")
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://192.0.2.10/creds")
	_, err := loadAWSConfig(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), "AWS_CONTAINER_CREDENTIALS_FULL_URI") || !strings.Contains(err.Error(), "192.0.2.10") {
		t.Fatalf("plain http to another host: %v", err)
	}
	for _, ok := range []string{"http://169.254.170.23/v1/credentials", "http://[fd00:ec2::23]/v1/credentials", "https://creds.example.com/role"} {
		t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ok)
		if _, err := loadAWSConfig(context.Background(), ""); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// TestAWSCredentialsRefreshBeforeTheyExpire: credentials that expire
// within the expiry window are fetched again on the next use; fresh ones
// are served from the cache.
func TestAWSCredentialsRefreshBeforeTheyExpire(t *testing.T) {
	credsEnv(t)
	t.Setenv("AWS_REGION", "us-west-2")
	agent := newContainerAgent(t, "",
		roleCredentials("ASIAFIRST", time.Now().Add(credentialsExpiryWindow/2)),
		roleCredentials("ASIASECOND", time.Now().Add(time.Hour)))
	cfg, err := loadAWSConfig(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		key    string
		served int
	}{{"ASIAFIRST", 1}, {"ASIASECOND", 2}, {"ASIASECOND", 2}, {"ASIASECOND", 2}} {
		c, err := cfg.Credentials.Retrieve(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if c.AccessKeyID != want.key || agent.served() != want.served {
			t.Fatalf("use %d: key %s after %d requests to the endpoint, want %s after %d", i, c.AccessKeyID, agent.served(), want.key, want.served)
		}
	}
}

// metadataService is EC2's instance metadata service, IMDSv2 only: a PUT
// for a session token, then GETs carrying it.
type metadataService struct {
	mu    sync.Mutex
	paths []string // "PUT /latest/api/token", "GET /latest/meta-data/..."
}

func (m *metadataService) handler(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.paths = append(m.paths, r.Method+" "+r.URL.Path)
		m.mu.Unlock()
		if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
			if r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds") == "" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			w.Write([]byte("imds-session-token"))
			return
		}
		if r.Method != http.MethodGet || r.Header.Get("X-Aws-Ec2-Metadata-Token") != "imds-session-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/latest/meta-data/iam/security-credentials/":
			w.Write([]byte("evergreen-core-role"))
		case "/latest/meta-data/iam/security-credentials/evergreen-core-role":
			c := roleCredentials("ASIAINSTANCE", time.Now().Add(6*time.Hour))
			c["Code"], c["Type"], c["LastUpdated"] = "Success", "AWS-HMAC", time.Now().UTC().Format(time.RFC3339)
			json.NewEncoder(w).Encode(c)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}
}

func TestAWSCredentialsFromInstanceMetadata(t *testing.T) {
	credsEnv(t)
	t.Setenv("AWS_REGION", "us-west-2")
	m := &metadataService{}
	srv := httptest.NewServer(m.handler(t))
	t.Cleanup(srv.Close)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.URL)
	_, c := retrieve(t, "")
	if c.AccessKeyID != "ASIAINSTANCE" || c.SecretAccessKey != "ASIAINSTANCE-secret" || c.SessionToken != "ASIAINSTANCE-token" || !c.CanExpire {
		t.Fatalf("credentials %+v, want the instance role's", c)
	}
	// The role's credentials are refreshed within the hour, however long
	// the service says they last.
	if c.Expires.After(time.Now().Add(time.Hour)) {
		t.Errorf("credentials expire %v, more than an hour ahead", c.Expires)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	want := []string{"PUT /latest/api/token", "GET /latest/meta-data/iam/security-credentials/",
		"GET /latest/meta-data/iam/security-credentials/evergreen-core-role"}
	if strings.Join(m.paths, "\n") != strings.Join(want, "\n") {
		t.Fatalf("instance metadata requests:\n%s\nwant\n%s", strings.Join(m.paths, "\n"), strings.Join(want, "\n"))
	}
}

// TestAWSUnsupportedProfilesRefusedSayingWhatToDo: a profile whose
// credentials need another AWS service (SSO, STS) or a program is an
// error naming the profile, the setting and the file, and what to give
// instead; it does not fall to the next source.
func TestAWSUnsupportedProfilesRefusedSayingWhatToDo(t *testing.T) {
	for _, tc := range []struct {
		name, profile, want string
	}{
		{"sso", "[profile sso]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = Edge\nregion = us-east-1\n" +
			"[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = us-east-1\n",
			`AWS profile "sso" (sso_session in CONFIG) takes its credentials from IAM Identity Center (SSO)`},
		{"legacy-sso", "[profile legacy-sso]\nsso_start_url = https://corp.awsapps.com/start\nsso_account_id = 123456789012\n",
			`AWS profile "legacy-sso" (sso_start_url in CONFIG) takes its credentials from IAM Identity Center (SSO)`},
		{"assume", "[profile assume]\nrole_arn = arn:aws:iam::123456789012:role/Edge\nsource_profile = base\n" +
			"aws_access_key_id = AKIDBASE\naws_secret_access_key = base-secret\n",
			`AWS profile "assume" (role_arn in CONFIG) takes its credentials from assuming a role`},
		{"process", "[profile process]\ncredential_process = /usr/bin/vault-creds edge\n",
			`AWS profile "process" (credential_process in CONFIG) takes its credentials from an external process`},
		{"webid", "[profile webid]\nweb_identity_token_file = /var/run/token\nrole_arn = arn:aws:iam::123456789012:role/Edge\n",
			`AWS profile "webid" (web_identity_token_file in CONFIG) takes its credentials from web identity`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			configFile, _ := credsEnv(t)
			// Instance metadata on: a refused profile must not fall to it.
			t.Setenv("AWS_EC2_METADATA_DISABLED", "")
			t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1")
			writeFile(t, configFile, tc.profile)
			t.Setenv("AWS_PROFILE", tc.name)
			_, err := loadAWSConfig(context.Background(), "us-east-1")
			want := strings.ReplaceAll(tc.want, "CONFIG", configFile)
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not support") ||
				!strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
				t.Fatalf("got %v\nwant it to contain %q and what to do", err, want)
			}
		})
	}

	// The same for web identity from the environment (EKS IRSA).
	credsEnv(t)
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks.amazonaws.com/serviceaccount/token")
	t.Setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/Edge")
	if _, err := loadAWSConfig(context.Background(), "us-east-1"); err == nil || !strings.Contains(err.Error(), "AWS_WEB_IDENTITY_TOKEN_FILE") {
		t.Fatalf("web identity from the environment: %v", err)
	}
}

func TestAWSNoCredentialsListsTheSourcesTried(t *testing.T) {
	configFile, credentialsFile := credsEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDHALF") // a secret forgotten
	t.Setenv("AWS_PROFILE", "missing")
	_, err := loadAWSConfig(context.Background(), "us-east-1")
	for _, want := range []string{
		"no AWS credentials",
		"the environment (AWS_ACCESS_KEY_ID without AWS_SECRET_ACCESS_KEY)",
		`profile "missing" (in neither ` + credentialsFile + " nor " + configFile + ")",
		"a container endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI unset)",
		"EC2 instance metadata (AWS_EC2_METADATA_DISABLED=true)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nwant it to contain %q", err, want)
		}
	}

	// With instance metadata on but no role there (off EC2, an instance
	// without a profile), the failure comes at the first use and lists
	// the same sources before it.
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_PROFILE", "")
	writeFile(t, configFile, "[default]\nregion = us-east-1\n")
	noRole := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(noRole.Close)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", noRole.URL)
	cfg, err := loadAWSConfig(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Credentials.Retrieve(context.Background())
	for _, want := range []string{
		"no AWS credentials",
		"the environment (no AWS_ACCESS_KEY_ID)",
		`profile "default" (no aws_access_key_id)`,
		"a container endpoint",
		"then EC2 instance metadata: ",
		"404",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nwant it to contain %q", err, want)
		}
	}
}

func TestAWSRegionFromTheEnvironmentThenTheProfile(t *testing.T) {
	configFile, _ := credsEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	writeFile(t, configFile, "[default]\nregion = sa-east-1 ; the plant's\n")
	for _, tc := range []struct{ region, awsRegion, defaultRegion, want string }{
		{"", "", "", "sa-east-1"},
		{"", "", "af-south-1", "af-south-1"},
		{"", "me-south-1", "af-south-1", "me-south-1"},
		{"eu-west-3", "me-south-1", "af-south-1", "eu-west-3"},
	} {
		t.Setenv("AWS_REGION", tc.awsRegion)
		t.Setenv("AWS_DEFAULT_REGION", tc.defaultRegion)
		if cfg, _ := retrieve(t, tc.region); cfg.Region != tc.want {
			t.Errorf("%+v: region %q", tc, cfg.Region)
		}
	}
	writeFile(t, configFile, "")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	if _, err := loadAWSConfig(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "no AWS region") {
		t.Fatalf("no region anywhere: %v", err)
	}
}
