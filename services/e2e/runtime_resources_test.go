package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/evergreen-edge/evergreen/services/internal/suitetest"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
)

// A GreengrassContainer function with the group's local resources: a
// volume attached rw (written through the group AutoAddGroupOwner adds: the
// folder is 0770 root:4242), a volume attached ro (read, never written,
// though the folder is 0777), a device (a char device made for the test,
// 0660 root:4241, read through its group) and a host folder the group does
// not name, which the function cannot see.
func TestContainerFunctionWithResources(t *testing.T) {
	needContainerd(t)
	needPython(t)
	const devGID, rwGID = 4241, 4242
	base := t.TempDir()
	os.Chmod(base, 0o755)
	rw, ro, undeclared := filepath.Join(base, "rw"), filepath.Join(base, "ro"), filepath.Join(base, "undeclared")
	for _, d := range []string{rw, ro, undeclared} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(rw, 0, rwGID); err != nil {
		t.Fatal(err)
	}
	os.Chmod(rw, 0o770)
	os.Chmod(ro, 0o777)
	os.Chmod(undeclared, 0o777)
	if err := os.WriteFile(filepath.Join(ro, "existing"), []byte("for reading"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Devices must be under /dev: a zero device (1:5) of our own there.
	device := fmt.Sprintf("/dev/evergreen-test-%d", os.Getpid())
	if err := syscall.Mknod(device, syscall.S_IFCHR|0o600, 1<<8|5); err != nil {
		if suitetest.RequireAll() {
			t.Fatalf("mknod %s: %v (EVERGREEN_REQUIRE_ALL is set)", device, err)
		}
		t.Skipf("mknod %s: %v", device, err)
	}
	t.Cleanup(func() { os.Remove(device) })
	if err := os.Chown(device, 0, devGID); err != nil {
		t.Fatal(err)
	}
	os.Chmod(device, 0o660)

	root := suitetest.ShortRoot(t)
	suitetest.WriteConfig(t, root, nil)
	suitetest.Start(t, root)
	f := inContainer(pyFn("resources", false, 20, nil), 32768)
	env := f["FunctionConfiguration"].(map[string]any)["Environment"].(map[string]any)
	env["ResourceAccessPolicies"] = []any{
		map[string]any{"ResourceId": "vol-rw", "Permission": "rw"},
		map[string]any{"ResourceId": "vol-ro", "Permission": "ro"},
		map[string]any{"ResourceId": "dev", "Permission": "ro"},
	}
	autoGroup := map[string]any{"AutoAddGroupOwner": true}
	resources := []any{
		map[string]any{"Id": "vol-rw", "Name": "vol-rw", "ResourceDataContainer": map[string]any{"LocalVolumeResourceData": map[string]any{
			"SourcePath": rw, "DestinationPath": "/res/rw", "GroupOwnerSetting": autoGroup}}},
		map[string]any{"Id": "vol-ro", "Name": "vol-ro", "ResourceDataContainer": map[string]any{"LocalVolumeResourceData": map[string]any{
			"SourcePath": ro, "DestinationPath": "/res/ro"}}},
		map[string]any{"Id": "dev", "Name": "dev", "ResourceDataContainer": map[string]any{"LocalDeviceResourceData": map[string]any{
			"SourcePath": device, "GroupOwnerSetting": autoGroup}}},
	}
	deployGroupWith(t, root, map[string]any{"Resources": map[string]any{"Resources": resources}}, f)

	event, _ := json.Marshal(map[string]string{"rw": "/res/rw", "ro": "/res/ro", "device": device, "undeclared": undeclared})
	r := ggctl(t, root, "fn", "invoke", "resources", string(event))
	if r.code != 0 {
		t.Fatalf("fn invoke resources: %d %s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("the function reports %s", r.stdout)
	var got struct {
		UID                      int
		Groups                   []int
		RwWrite, RoWrite, RoRead string
		Device                   any
		UndeclaredSeen           bool
		UndeclaredWrite          string
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	if got.UID == 0 {
		t.Error("the function runs as root")
	}
	if !slices.Contains(got.Groups, devGID) || !slices.Contains(got.Groups, rwGID) {
		t.Errorf("groups %v, want the owners of the device (%d) and of the rw volume (%d) added", got.Groups, devGID, rwGID)
	}
	if got.RwWrite != "written" {
		t.Errorf("write to the rw volume: %s", got.RwWrite)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "new")); err != nil || string(b) != "from the function" {
		t.Errorf("the rw volume's file on the host: %q %v", b, err)
	}
	if got.RoWrite != fmt.Sprintf("errno %d", int(syscall.EROFS)) {
		t.Errorf("write to the ro volume: %s, want EROFS", got.RoWrite)
	}
	if _, err := os.Stat(filepath.Join(ro, "new")); err == nil {
		t.Error("a file appeared in the ro volume on the host")
	}
	if got.RoRead != "for reading" {
		t.Errorf("read from the ro volume: %s", got.RoRead)
	}
	if fmt.Sprint(got.Device) != "8" {
		t.Errorf("read of the device: %v, want 8 bytes", got.Device)
	}
	if got.UndeclaredSeen || got.UndeclaredWrite != fmt.Sprintf("errno %d", int(syscall.ENOENT)) {
		t.Errorf("the undeclared host folder: seen %v, write %s", got.UndeclaredSeen, got.UndeclaredWrite)
	}
	if _, err := os.Stat(filepath.Join(undeclared, "new")); err == nil {
		t.Error("the function wrote in a host folder the group does not name")
	}
}

// deployGroupWith deploys the core test-core with fns (NoContainer by
// default) and the top-level sections in extra.
func deployGroupWith(t *testing.T, root layout.Root, extra map[string]any, fns ...map[string]any) {
	t.Helper()
	list := make([]any, len(fns))
	for i, f := range fns {
		list[i] = f
	}
	g := map[string]any{
		"Core": map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("test-core"), "CertificateArn": acct + "cert/" + strings.Repeat("ab", 32)}}},
		"Functions": map[string]any{
			"DefaultConfig": map[string]any{"Execution": map[string]any{"IsolationMode": "NoContainer"}},
			"Functions":     list,
		},
	}
	for k, v := range extra {
		g[k] = v
	}
	b, _ := json.Marshal(g)
	gf := filepath.Join(t.TempDir(), "group.json")
	os.WriteFile(gf, b, 0o600)
	if r := ggctl(t, root, "deploy", gf); r.code != 0 {
		t.Fatalf("deploy: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
