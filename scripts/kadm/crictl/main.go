// A minimal crictl for kubeadm 1.20 on machines without cri-tools. kubeadm shells out to
// `crictl -r SOCKET <cmd>` for: info (preflight), inspecti and pull (image preflight),
// pods -q, stopp, rmp (reset). This implements those plus ps/images/version for debugging.
// `pull` never contacts a registry: it succeeds only when the image is already present.
// Built against the vendored CRI client of Debian's kubernetes 1.20.2 source (see ../build.sh).
// Copied unchanged from the reference kubeadm yardstick (reference/kubeadm/crictl/main.go).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	pb "k8s.io/cri-api/pkg/apis/runtime/v1alpha2"
)

func die(f string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, f+"\n", a...)
	os.Exit(1)
}

func main() {
	ep := os.Getenv("CONTAINER_RUNTIME_ENDPOINT")
	if ep == "" {
		ep = "unix:///run/containerd/containerd.sock"
	}
	args := os.Args[1:]
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		a := args[0]
		args = args[1:]
		val := ""
		if i := strings.Index(a, "="); i > 0 {
			a, val = a[:i], a[i+1:]
		} else if a == "-r" || a == "--runtime-endpoint" || a == "-i" || a == "--image-endpoint" || a == "-t" || a == "--timeout" || a == "-c" || a == "--config" {
			if len(args) == 0 {
				die("missing value for %s", a)
			}
			val, args = args[0], args[1:]
		}
		if a == "-r" || a == "--runtime-endpoint" {
			ep = val
		}
	}
	if len(args) == 0 {
		die("usage: crictl [-r ENDPOINT] info|version|images|inspecti IMG|pull IMG|pods|ps|stopp ID..|rmp ID..|stop ID..|rm ID..")
	}
	if !strings.Contains(ep, "://") {
		ep = "unix://" + ep
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, ep, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		die("connect %s: %v", ep, err)
	}
	rt := pb.NewRuntimeServiceClient(conn)
	im := pb.NewImageServiceClient(conn)
	cmd, rest := args[0], args[1:]
	quiet, all := false, false
	var ids []string
	for _, a := range rest {
		switch a {
		case "-q", "--quiet":
			quiet = true
		case "-a", "--all":
			all = true
		default:
			if !strings.HasPrefix(a, "-") {
				ids = append(ids, a)
			}
		}
	}
	out := func(v interface{}) {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Println(string(b))
	}
	switch cmd {
	case "info":
		r, err := rt.Status(ctx, &pb.StatusRequest{Verbose: false})
		if err != nil {
			die("status: %v", err)
		}
		out(r.Status)
	case "version":
		r, err := rt.Version(ctx, &pb.VersionRequest{})
		if err != nil {
			die("version: %v", err)
		}
		fmt.Printf("RuntimeName:  %s\nRuntimeVersion:  %s\nRuntimeApiVersion:  %s\n", r.RuntimeName, r.RuntimeVersion, r.RuntimeApiVersion)
	case "inspecti", "pull":
		if len(ids) != 1 {
			die("%s needs one image", cmd)
		}
		r, err := im.ImageStatus(ctx, &pb.ImageStatusRequest{Image: &pb.ImageSpec{Image: ids[0]}})
		if err != nil {
			die("image status %s: %v", ids[0], err)
		}
		if r.Image == nil {
			if cmd == "pull" {
				die("image %s is not present and this crictl never pulls from a registry", ids[0])
			}
			die("no such image %q present", ids[0])
		}
		if cmd == "pull" {
			fmt.Printf("Image is up to date for %s\n", r.Image.Id)
		} else {
			out(r.Image)
		}
	case "images":
		r, err := im.ListImages(ctx, &pb.ListImagesRequest{})
		if err != nil {
			die("list images: %v", err)
		}
		for _, i := range r.Images {
			if quiet {
				fmt.Println(i.Id)
			} else {
				fmt.Printf("%s\t%s\t%d\n", strings.Join(i.RepoTags, ","), i.Id, i.Size_)
			}
		}
	case "pods":
		r, err := rt.ListPodSandbox(ctx, &pb.ListPodSandboxRequest{})
		if err != nil {
			die("list pods: %v", err)
		}
		for _, p := range r.Items {
			if quiet {
				fmt.Println(p.Id)
			} else {
				fmt.Printf("%.13s\t%s\t%s\t%s\n", p.Id, p.State, p.Metadata.Namespace, p.Metadata.Name)
			}
		}
	case "ps":
		f := &pb.ContainerFilter{}
		if !all {
			f.State = &pb.ContainerStateValue{State: pb.ContainerState_CONTAINER_RUNNING}
		}
		r, err := rt.ListContainers(ctx, &pb.ListContainersRequest{Filter: f})
		if err != nil {
			die("list containers: %v", err)
		}
		for _, c := range r.Containers {
			if quiet {
				fmt.Println(c.Id)
			} else {
				fmt.Printf("%.13s\t%s\t%s\t%d\t%.13s\t%s\n", c.Id, c.State, c.Metadata.Name, c.Metadata.Attempt, c.PodSandboxId, c.Image.Image)
			}
		}
	case "stopp", "rmp", "stop", "rm":
		if len(ids) == 0 {
			die("%s needs an id", cmd)
		}
		for _, id := range ids {
			var err error
			switch cmd {
			case "stopp":
				_, err = rt.StopPodSandbox(ctx, &pb.StopPodSandboxRequest{PodSandboxId: id})
			case "rmp":
				_, err = rt.RemovePodSandbox(ctx, &pb.RemovePodSandboxRequest{PodSandboxId: id})
			case "stop":
				_, err = rt.StopContainer(ctx, &pb.StopContainerRequest{ContainerId: id, Timeout: 10})
			case "rm":
				_, err = rt.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: id})
			}
			if err != nil {
				die("%s %s: %v", cmd, id, err)
			}
			fmt.Println(id)
		}
	default:
		die("unsupported command %q", cmd)
	}
}
