package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The AWS Go SDK's service modules for Kinesis, IoT Analytics and IoT
// SiteWise are not used: their one call each is a SigV4-signed JSON POST
// (JSON 1.1 for Kinesis, REST-JSON for the others), built here from the
// services' API references. The service modules' endpoint tables and
// schemas would cost their heap at init in every process of the
// multi-call binary.

// awsAPIError is a service's answer other than 2xx.
type awsAPIError struct {
	Op      string // "iotsitewise BatchPutAssetPropertyValue"
	Status  int
	Code    string // ThrottlingException; "" when the answer named none
	Message string
}

func (e *awsAPIError) Error() string {
	s := fmt.Sprintf("%s: HTTP %d", e.Op, e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// awsEndpointURL is the base URL of service: the configured override as it
// is (a test server, a VPC endpoint: give the data plane's for SiteWise),
// else AWS's https://<hostPrefix><service>.<region>.amazonaws.com
// (.amazonaws.com.cn in the China regions).
func (m *Manager) awsEndpointURL(service, hostPrefix, region string) string {
	if u := m.awsEndpoint(service); u != nil {
		return strings.TrimSuffix(*u, "/")
	}
	suffix := ".amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		suffix += ".cn"
	}
	return "https://" + hostPrefix + service + "." + region + suffix
}

// awsOperation is where and how one AWS API call is sent.
type awsOperation struct {
	service    string // signing name, and the host's first label
	hostPrefix string // "data." for SiteWise's data plane
	path       string
	name       string // "BatchPutMessage", for errors
	// target is the X-Amz-Target of the JSON 1.1 protocol
	// ("Kinesis_20131202.PutRecords"); "" for REST-JSON.
	target string
}

// postAWSJSON POSTs in as JSON to path of service (signing name service)
// with the REST-JSON protocol, as callAWS does.
func (e *exporter) postAWSJSON(ctx context.Context, service, hostPrefix, path, op string, in, out any) error {
	return e.callAWS(ctx, awsOperation{service: service, hostPrefix: hostPrefix, path: path, name: op}, in, out)
}

// callAWS POSTs in as JSON for op, SigV4-signed with the credential
// chain's credentials, charging the body to the bandwidth limit, and
// decodes a 2xx answer into out.
func (e *exporter) callAWS(ctx context.Context, o awsOperation, in, out any) error {
	op := o.service + " " + o.name
	cfg, err := e.m.awsConfig(ctx)
	if err != nil {
		return fmt.Errorf("%s: AWS configuration: %w", op, err)
	}
	if cfg.Credentials == nil {
		return fmt.Errorf("%s: no AWS credentials", op)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("%s: AWS credentials: %w", op, err)
	}
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := e.charge(ctx, len(body)); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.m.awsEndpointURL(o.service, o.hostPrefix, cfg.Region)+o.path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if o.target != "" {
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", o.target)
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), o.service, cfg.Region, time.Now()); err != nil {
		return fmt.Errorf("%s: signing: %w", op, err)
	}
	resp, err := e.m.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s: reading the answer: %w", op, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apiError(op, resp, answer)
	}
	if out != nil && len(bytes.TrimSpace(answer)) > 0 {
		if err := json.Unmarshal(answer, out); err != nil {
			return fmt.Errorf("%s: malformed answer: %w", op, err)
		}
	}
	return nil
}

// apiError reads a JSON error answer: the code from the
// X-Amzn-ErrorType header or the body's __type or code, the message from
// the body's message or Message.
func apiError(op string, resp *http.Response, body []byte) error {
	e := &awsAPIError{Op: op, Status: resp.StatusCode}
	var b struct {
		Type     string `json:"__type"`
		Code     string `json:"code"`
		Message  string `json:"message"`
		MessageU string `json:"Message"`
	}
	_ = json.Unmarshal(body, &b) // a proxy's HTML page: status only
	e.Code = resp.Header.Get("X-Amzn-Errortype")
	if e.Code == "" {
		e.Code = b.Type
	}
	if e.Code == "" {
		e.Code = b.Code
	}
	// "ThrottlingException:http://internal..." or "aws.protocols#ThrottlingException"
	e.Code, _, _ = strings.Cut(e.Code, ":")
	if i := strings.LastIndexByte(e.Code, '#'); i >= 0 {
		e.Code = e.Code[i+1:]
	}
	e.Message = b.Message
	if e.Message == "" {
		e.Message = b.MessageU
	}
	return e
}

// apiCode is the error code of err when a service answered it.
func apiCode(err error) (status int, code string, ok bool) {
	var e *awsAPIError
	if errors.As(err, &e) {
		return e.Status, e.Code, true
	}
	return 0, "", false
}
