package kube

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The permission bits the kubelet adds for fsGroup
// (pkg/volume/volume_linux.go).
const (
	rwMask   = os.FileMode(0o660)
	roMask   = os.FileMode(0o440)
	execMask = os.FileMode(0o110)
)

// SetVolumeOwnership gives a volume to fsGroup as the kubelet does before
// a container starts: every entry's group becomes fsGroup, gains group
// read (and write unless read-only) access, directories and executables
// group search, directories setgid so new entries inherit the group. With
// OnRootMismatch nothing is changed when the root already looks right.
func SetVolumeOwnership(dir string, fsGroup int64, readOnly bool, policy *corev1.PodFSGroupChangePolicy) error {
	if policy != nil && *policy == corev1.FSGroupChangeOnRootMismatch && !requiresPermissionChange(dir, fsGroup, readOnly) {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if err := os.Lchown(p, -1, int(fsGroup)); err != nil {
			return err
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			return nil
		}
		mask := rwMask
		if readOnly {
			mask = roMask
		}
		if info.IsDir() {
			mask |= os.ModeSetgid | execMask
		}
		return os.Chmod(p, info.Mode()|mask)
	})
}

func requiresPermissionChange(dir string, fsGroup int64, readOnly bool) bool {
	info, err := os.Stat(dir)
	if err != nil {
		return true
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || int64(st.Gid) != fsGroup || !info.IsDir() {
		return true
	}
	want := rwMask
	if readOnly {
		want = roMask
	}
	want |= execMask
	return info.Mode().Perm()&want != want || info.Mode()&os.ModeSetgid == 0
}

// VolumeOptions describes a PersistentVolume made for one claim.
type VolumeOptions struct {
	// Namespace and Claim name the PersistentVolumeClaim the volume is
	// reserved for (claimRef), whether or not it exists yet.
	Namespace, Claim string
	// StorageClass must match the claim's ("" for none).
	StorageClass string
	AccessModes  []corev1.PersistentVolumeAccessMode
	// Fresh lays the directory out as a newly formatted ext4 volume is:
	// a root-owned 0755 root with an empty lost+found (0700).
	Fresh bool
}

// ProvisionVolume creates a directory on the node and a local
// PersistentVolume for it, pre-bound to the claim as a static provisioner
// would; the binder controller completes the binding once the claim
// exists. It returns the directory.
func (n *Node) ProvisionVolume(ctx context.Context, name string, o VolumeOptions) (string, error) {
	dir := filepath.Join(n.opts.Dir, "volumes", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	if o.Fresh {
		if err := os.Mkdir(filepath.Join(dir, "lost+found"), 0o700); err != nil && !os.IsExist(err) {
			return "", err
		}
	}
	modes := o.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("100Gi")},
			AccessModes:                   modes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              o.StorageClass,
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: o.Namespace, Name: o.Claim},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}},
			// A local volume lives on one node.
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{n.opts.Name}}},
			}}}},
		},
	}
	if _, err := n.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("create PersistentVolume %s: %w", name, err)
	}
	return dir, nil
}
