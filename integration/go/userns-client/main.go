// Command userns-client is the Go client of the integration suite tests/userns.rs (issue 24):
// it runs one user-namespaced container the way a Go program using containerd's client library
// does, for the cases of a read-only rootfs: a remapped snapshot view of an image
// (WithRemappedSnapshotView: read-only, chowned to the namespace's root), a spec with a user
// namespace, and runc options whose IoUid/IoGid let that root write its stdio pipes.
//
// It prints one line per fact, for the test to assert on:
//
//	snapshot-kind <View|Active>         what the client's snapshot option made
//	rootfs-mount <type> <options>       what the snapshotter hands the shim
//	create ok | create error: <err>
//	shim-mountinfo <line>               the shim's mount of <bundle>/rootfs after Create
//	stdout <text> / stderr <text>       the container's output, line by line
//	exit <code>
//
// and exits 0 once it has removed what it made (task, containers, their snapshots), whatever
// the container did; 1 when a step other than Create failed; 2 for bad arguments.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/runtime/v2/runc/options"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// script is the container's command: `ok`, then what the process sees of its namespace and
// of its root.
const script = "echo ok; echo uid_map $(cat /proc/self/uid_map); " +
	"if touch /.probe 2>/dev/null; then echo rootfs writable; else echo rootfs read-only; fi"

type config struct {
	address, ns, ref, id, runtime, snapshotter, fifoDir, rootfs string
	hostID, size                                                uint32
	cached, readonlySpec                                        bool
}

func main() {
	var c config
	var hostID, size uint
	flag.StringVar(&c.address, "address", "", "containerd's socket")
	flag.StringVar(&c.ns, "namespace", "default", "containerd namespace")
	flag.StringVar(&c.ref, "image", "", "image reference (imported)")
	flag.StringVar(&c.id, "id", "userns", "container id")
	flag.StringVar(&c.runtime, "runtime", "io.containerd.runc.v2", "runtime type")
	flag.StringVar(&c.snapshotter, "snapshotter", "overlayfs", "snapshotter")
	flag.StringVar(&c.fifoDir, "fifo-dir", "", "where the stdio FIFOs go (default: containerd's)")
	flag.StringVar(&c.rootfs, "rootfs", "remapped-view",
		"remapped-view (WithRemappedSnapshotView), remapped (WithRemappedSnapshot) or view (WithNewSnapshotView: not remapped)")
	flag.UintVar(&hostID, "host-id", 100000, "host uid and gid of the container's root")
	flag.UintVar(&size, "size", 65536, "ids mapped")
	flag.BoolVar(&c.cached, "cached", false,
		"first make another container of the same image and ids, so that the client finds the remapped parent snapshot already there")
	flag.BoolVar(&c.readonlySpec, "readonly-spec", false, "oci.WithRootFSReadonly: runc makes the root read-only")
	timeout := flag.Duration("timeout", 60*time.Second, "deadline for the whole run")
	flag.Parse()
	c.hostID, c.size = uint32(hostID), uint32(size)
	if c.address == "" || c.ref == "" || (c.rootfs != "remapped-view" && c.rootfs != "remapped" && c.rootfs != "view") {
		fmt.Fprintln(os.Stderr, "usage: userns-client -address SOCK -image REF [-namespace NS] [-id ID] [-rootfs remapped-view|remapped|view] [-cached] [-readonly-spec]")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), c.ns), *timeout)
	defer cancel()
	if err := run(ctx, c); err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	}
}

// cleanupCtx outlives the run's deadline, so that what the run made is removed anyway.
func cleanupCtx(ns string) (context.Context, context.CancelFunc) {
	return context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
}

func run(ctx context.Context, c config) error {
	client, err := containerd.New(c.address, containerd.WithTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer client.Close()
	image, err := client.GetImage(ctx, c.ref)
	if err != nil {
		return fmt.Errorf("get image: %w", err)
	}
	// ctr's import unpacks into the default snapshotter; make sure of the one asked for.
	if ok, err := image.IsUnpacked(ctx, c.snapshotter); err != nil || !ok {
		if err := image.Unpack(ctx, c.snapshotter); err != nil {
			return fmt.Errorf("unpack image: %w", err)
		}
	}
	newContainer := func(id string) (containerd.Container, error) {
		snapshot := containerd.WithRemappedSnapshotView(id, image, c.hostID, c.hostID)
		switch c.rootfs {
		case "remapped":
			snapshot = containerd.WithRemappedSnapshot(id, image, c.hostID, c.hostID)
		case "view":
			snapshot = containerd.WithNewSnapshotView(id, image)
		}
		maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: c.hostID, Size: c.size}}
		specOpts := []oci.SpecOpts{
			oci.WithImageConfig(image),
			oci.WithUserNamespace(maps, maps),
			oci.WithProcessArgs("sh", "-c", script),
		}
		if c.readonlySpec {
			specOpts = append(specOpts, oci.WithRootFSReadonly())
		}
		return client.NewContainer(ctx, id,
			containerd.WithSnapshotter(c.snapshotter),
			snapshot,
			containerd.WithRuntime(c.runtime, &options.Options{IoUid: c.hostID, IoGid: c.hostID}),
			containerd.WithNewSpec(specOpts...),
		)
	}
	deleteContainer := func(ct containerd.Container) {
		dctx, dcancel := cleanupCtx(c.ns)
		defer dcancel()
		if err := ct.Delete(dctx, containerd.WithSnapshotCleanup); err != nil {
			fmt.Printf("cleanup error: delete container %s: %v\n", ct.ID(), err)
		}
	}
	if c.cached {
		// While it exists, its remapped parent snapshot cannot be collected.
		holder, err := newContainer(c.id + "-holder")
		if err != nil {
			return fmt.Errorf("new holder container: %w", err)
		}
		defer deleteContainer(holder)
	}
	container, err := newContainer(c.id)
	if err != nil {
		return fmt.Errorf("new container: %w", err)
	}
	defer deleteContainer(container)

	snapshots := client.SnapshotService(c.snapshotter)
	info, err := snapshots.Stat(ctx, c.id)
	if err != nil {
		return fmt.Errorf("snapshot stat: %w", err)
	}
	fmt.Printf("snapshot-kind %s\n", info.Kind)
	mounts, err := snapshots.Mounts(ctx, c.id)
	if err != nil {
		return fmt.Errorf("snapshot mounts: %w", err)
	}
	for _, m := range mounts {
		fmt.Printf("rootfs-mount %s %s\n", m.Type, strings.Join(m.Options, ","))
	}

	var stdout, stderr bytes.Buffer
	ioOpts := []cio.Opt{cio.WithStreams(nil, &stdout, &stderr)}
	if c.fifoDir != "" {
		ioOpts = append(ioOpts, cio.WithFIFODir(c.fifoDir))
	}
	task, err := container.NewTask(ctx, cio.NewCreator(ioOpts...))
	if err != nil {
		fmt.Printf("create error: %v\n", err)
		return nil
	}
	fmt.Println("create ok")
	for _, l := range shimRootfsMounts(c.ns, c.id) {
		fmt.Printf("shim-mountinfo %s\n", l)
	}
	defer func() {
		dctx, dcancel := cleanupCtx(c.ns)
		defer dcancel()
		if _, err := task.Delete(dctx, containerd.WithProcessKill); err != nil {
			fmt.Printf("cleanup error: delete task: %v\n", err)
		}
	}()
	exited, err := task.Wait(ctx)
	if err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	if err := task.Start(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	var status containerd.ExitStatus
	select {
	case status = <-exited:
	case <-ctx.Done():
		return fmt.Errorf("wait for exit: %w", ctx.Err())
	}
	code, _, err := status.Result()
	if err != nil {
		return fmt.Errorf("exit status: %w", err)
	}
	// The output is complete once the shim has closed the task's stdio.
	task.IO().Wait()
	for _, l := range lines(stdout.String()) {
		fmt.Printf("stdout %s\n", l)
	}
	for _, l := range lines(stderr.String()) {
		fmt.Printf("stderr %s\n", l)
	}
	fmt.Printf("exit %d\n", code)
	return nil
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// shimRootfsMounts finds the shim of container id in namespace ns (its command line names both)
// and returns its mountinfo lines for <bundle>/rootfs: the flags runc is handed the rootfs with.
func shimRootfsMounts(ns, id string) []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []string{"unreadable /proc: " + err.Error()}
	}
	suffix := "/" + ns + "/" + id + "/rootfs"
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !isShimOf(strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00"), ns, id) {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "mountinfo"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasSuffix(fields[4], suffix) {
				out = append(out, sc.Text())
			}
		}
		f.Close()
	}
	if len(out) == 0 {
		out = append(out, "none")
	}
	return out
}

func isShimOf(args []string, ns, id string) bool {
	if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
		return false
	}
	var gotNS, gotID bool
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-namespace":
			gotNS = gotNS || args[i+1] == ns
		case "-id":
			gotID = gotID || args[i+1] == id
		}
	}
	return gotNS && gotID
}
