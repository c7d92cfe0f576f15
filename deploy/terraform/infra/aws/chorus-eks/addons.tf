# Cluster add-ons from their projects' Helm repositories, each chart version pinned.

# GPU nodes: the EKS NVIDIA AMI brings the driver and the container toolkit; the device plugin advertises
# nvidia.com/gpu, which the chart's GPU pools request. It runs only on the GPU nodes (label set by chorus-values).
resource "helm_release" "nvidia_device_plugin" {
  count = module.chorus_values.gpu_nodes ? 1 : 0

  name             = "nvidia-device-plugin"
  repository       = "https://nvidia.github.io/k8s-device-plugin"
  chart            = "nvidia-device-plugin"
  version          = "0.17.2"
  namespace        = "nvidia-device-plugin"
  create_namespace = true

  values = [yamlencode({
    nodeSelector = { "nvidia.com/gpu.present" = "true" }
    tolerations  = [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }]
  })]

  depends_on = [module.eks]
}

resource "helm_release" "cluster_autoscaler" {
  count = var.enable_cluster_autoscaler ? 1 : 0

  name       = "cluster-autoscaler"
  repository = "https://kubernetes.github.io/autoscaler"
  chart      = "cluster-autoscaler"
  version    = "9.46.6"
  namespace  = "kube-system"

  values = [yamlencode({
    cloudProvider = "aws"
    awsRegion     = var.region
    # Managed node groups' Auto Scaling groups carry the auto-discovery tags; scale-from-zero reads the groups'
    # labels and taints from the EKS API.
    autoDiscovery = { clusterName = module.eks.cluster_name }
    rbac = {
      serviceAccount = {
        name        = "cluster-autoscaler"
        annotations = { "eks.amazonaws.com/role-arn" = module.cluster_autoscaler_irsa[0].arn }
      }
    }
    extraArgs = {
      "balance-similar-node-groups"   = true
      "skip-nodes-with-local-storage" = false
      "expander"                      = "least-waste"
    }
  })]

  depends_on = [module.eks]
}

resource "helm_release" "aws_load_balancer_controller" {
  count = var.enable_ingress ? 1 : 0

  name       = "aws-load-balancer-controller"
  repository = "https://aws.github.io/eks-charts"
  chart      = "aws-load-balancer-controller"
  version    = "1.13.4"
  namespace  = "kube-system"

  values = [yamlencode({
    clusterName = module.eks.cluster_name
    region      = var.region
    vpcId       = module.vpc.vpc_id
    serviceAccount = {
      name        = "aws-load-balancer-controller"
      annotations = { "eks.amazonaws.com/role-arn" = module.load_balancer_controller_irsa[0].arn }
    }
  })]

  depends_on = [module.eks]
}

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
    prometheus = {
      prometheusSpec = {
        retention = "15d"
        storageSpec = {
          volumeClaimTemplate = {
            spec = {
              storageClassName = kubernetes_storage_class_v1.gp3.metadata[0].name
              accessModes      = ["ReadWriteOnce"]
              resources        = { requests = { storage = "50Gi" } }
            }
          }
        }
      }
    }
  })]

  depends_on = [module.eks]
}

resource "helm_release" "keda" {
  count = var.enable_pod_autoscaler ? 1 : 0

  name             = "keda"
  repository       = "https://kedacore.github.io/charts"
  chart            = "keda"
  version          = "2.17.2"
  namespace        = "keda"
  create_namespace = true

  depends_on = [module.eks]
}
