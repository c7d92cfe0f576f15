# Cluster add-ons from their projects' Helm repositories, each chart version pinned. GKE itself provides the NVIDIA
# driver and device plugin (accelerator node pools) and the node autoscaler (the pools' autoscaling).

# Prometheus Operator and Prometheus as release `prometheus` in `monitoring`: the chart's PodMonitor carries
# `release: prometheus`, and KEDA queries http://prometheus-operated.monitoring.svc:9090 (the chart's default).
resource "helm_release" "kube_prometheus_stack" {
  count = var.enable_metrics ? 1 : 0

  name             = "prometheus"
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = "75.15.0"
  namespace        = "monitoring"
  create_namespace = true

  values = [yamlencode({
    # GKE manages these control plane components; there is nothing to scrape.
    kubeControllerManager = { enabled = false }
    kubeScheduler         = { enabled = false }
    kubeEtcd              = { enabled = false }
    kubeProxy             = { enabled = false }
    prometheus = {
      prometheusSpec = {
        retention = "15d"
        storageSpec = {
          volumeClaimTemplate = {
            spec = {
              storageClassName = module.chorus_values.storage_class
              accessModes      = ["ReadWriteOnce"]
              resources        = { requests = { storage = "50Gi" } }
            }
          }
        }
      }
    }
  })]

  depends_on = [module.gke]
}

resource "helm_release" "keda" {
  count = var.enable_pod_autoscaler ? 1 : 0

  name             = "keda"
  repository       = "https://kedacore.github.io/charts"
  chart            = "keda"
  version          = "2.17.2"
  namespace        = "keda"
  create_namespace = true

  depends_on = [module.gke]
}
