// Command mpi-operator runs the Kubeflow MPI operator's MPIJob controller (v2beta1) out of cluster.
//
// The controller is upstream's own (github.com/kubeflow/mpi-operator/pkg/controller at the
// pinned release); only the process around it is ours. Upstream's main serves its health
// check on the fixed address :8080 of every interface and exits when that port is taken,
// so two test control planes (or anything else on 8080) cannot run beside each other. This
// main takes the health address as a flag, binds it on loopback, and skips leader election:
// each test control plane runs exactly one operator.
package main

import (
	"context"
	"flag"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/kubeflow/mpi-operator/cmd/mpi-operator/app/options"
	mpijobclientset "github.com/kubeflow/mpi-operator/pkg/client/clientset/versioned"
	kubeflowscheme "github.com/kubeflow/mpi-operator/pkg/client/clientset/versioned/scheme"
	informers "github.com/kubeflow/mpi-operator/pkg/client/informers/externalversions"
	"github.com/kubeflow/mpi-operator/pkg/controller"
)

func main() {
	opt := options.NewServerOption()
	opt.AddFlags(flag.CommandLine) // upstream's flags: --kubeConfig, --namespace, --threadiness, ...
	healthAddr := flag.String("health-addr", "127.0.0.1:0", "loopback address of /healthz (200 once the caches are synced)")
	flag.Parse()

	cfg, err := clientcmd.BuildConfigFromFlags(opt.MasterURL, opt.Kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	cfg.QPS, cfg.Burst = float32(max(opt.QPS, 5)), max(opt.Burst, 10)
	kubeClient := kubernetes.NewForConfigOrDie(rest.AddUserAgent(cfg, "mpi-operator"))
	mpiClient := mpijobclientset.NewForConfigOrDie(cfg)
	if err := kubeflowscheme.AddToScheme(clientgoscheme.Scheme); err != nil { // events about MPIJobs
		klog.Fatalf("scheme: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-stop; cancel() }()

	var kubeOpts []kubeinformers.SharedInformerOption
	var mpiOpts []informers.SharedInformerOption
	if opt.Namespace != "" {
		kubeOpts = append(kubeOpts, kubeinformers.WithNamespace(opt.Namespace))
		mpiOpts = append(mpiOpts, informers.WithNamespace(opt.Namespace))
	}
	kubeInformers := kubeinformers.NewSharedInformerFactoryWithOptions(kubeClient, 0, kubeOpts...)
	mpiInformers := informers.NewSharedInformerFactoryWithOptions(mpiClient, 0, mpiOpts...)
	ctrl, err := controller.NewMPIJobController(ctx, kubeClient, mpiClient, nil, nil,
		kubeInformers.Core().V1().ConfigMaps(), kubeInformers.Core().V1().Secrets(),
		kubeInformers.Core().V1().Services(), kubeInformers.Batch().V1().Jobs(),
		kubeInformers.Core().V1().Pods(), kubeInformers.Scheduling().V1().PriorityClasses(),
		mpiInformers.Kubeflow().V2beta1().MPIJobs(), opt)
	if err != nil {
		klog.Fatalf("controller: %v", err)
	}
	kubeInformers.Start(ctx.Done())
	mpiInformers.Start(ctx.Done())

	var synced atomic.Bool
	go func() {
		kubeInformers.WaitForCacheSync(ctx.Done())
		mpiInformers.WaitForCacheSync(ctx.Done())
		synced.Store(true)
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !synced.Load() {
			http.Error(w, "informer caches not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	go func() {
		if err := http.ListenAndServe(*healthAddr, mux); err != nil {
			klog.Fatalf("health server on %s: %v", *healthAddr, err)
		}
	}()

	klog.Infof("MPI operator controller (v2beta1) starting, namespace %q", opt.Namespace)
	if err := ctrl.Run(max(opt.Threadiness, 1), ctx.Done()); err != nil {
		klog.Fatalf("controller: %v", err)
	}
}
