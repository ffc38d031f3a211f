// Package artifact brings a deployment's artifacts onto the core: function
// code and machine-learning models (S3MachineLearningModelResourceData,
// SageMakerMachineLearningModelResourceData). It fetches them from https://
// or file:// URLs (our extension field beside v1's S3Uri) into a cache,
// checks their sha256 and size, and unpacks them safely to their
// DestinationPath with the resource's OwnerSetting.
//
// Cache (NewFetcher's dir; the deployagent uses DIR/data/deployagent/artifacts):
//
//	sha256/<hex>        verified artifacts, 0400, named by digest
//	partial/<hex>.part  a download in progress or interrupted
//
// A download streams into its partial file, never past the declared size or
// the limit (DefaultMaxBytes); the sha256 is checked over the whole file,
// which is then fsynced and renamed into sha256/. An interrupted download
// keeps its partial file and the next Fetch resumes it with a Range request
// (a server that ignores Range sends everything again). A bad artifact
// leaves nothing. GC removes what the current and previous deployments do
// not reference, and unreferenced partial files a day old.
//
// Unpack detects tar.gz, tar and zip by magic bytes (or copies one plain
// file) and builds the tree in a staging directory beside the destination,
// then renames it into place: the destination holds the old tree or the
// whole new one, never a mix, and a refused archive leaves nothing. Refused:
// absolute names, names escaping the destination, entries written through a
// symbolic link, links resolving outside, hard links to anything but an
// earlier regular file, devices, FIFOs, sockets, duplicates, corrupt or
// truncated archives, and archives over 10000 entries, 2 GiB per file or
// 4 GiB in all (the defaults of UnpackOptions).
//
// Permissions (files, executables, directories): without an OwnerSetting
// 0644, 0755, 0755 owned by ggd's user and group. With one, the group is set
// to GroupOwner and both ggd's user and the group get GroupPermission,
// others nothing: ro gives 0440, 0550, 0550; rw gives 0660, 0770, 0770. An
// entry is executable when its archive mode has any x bit. Setting a group
// takes root or membership of the group; otherwise Unpack fails with
// ErrPermissionDenied.
package artifact
