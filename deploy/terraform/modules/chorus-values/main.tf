# The mapping from the root configurations' variables to the Chorus chart's values (the familiar values.yaml shape:
# clusterName, infra, release, filesystem, ingress, metrics, legacyComponents, workers) and to the node groups /
# node pools the community modules take. No resources: everything here is computed from the variables, so the
# tests in tests/ check it offline.

locals {
  aws = var.platform == "aws"
  gcp = var.platform == "gcp"

  # --- names the roots and the values agree on ------------------------------------------------------------------
  artifact_bucket = (var.artifact_bucket != "" ? var.artifact_bucket
  : local.aws ? "${var.name}-chorus-artifacts-${var.region}" : "${var.project_id}-${var.name}-chorus")
  artifacts_location = var.enable_hot_reload ? "${local.aws ? "s3" : "gs"}://${local.artifact_bucket}/chorus" : ""
  # The Kubernetes ServiceAccount every Chorus pod runs as, made by the chart with the workload identity annotation
  # the root passes (IRSA role ARN or GCP service account); the roots bind that identity to this name.
  service_account_name = "${var.release_name}-sa"
  # The chart's full name, which names its Ingress (see templates/_helpers.tpl, chorus.fullname).
  fullname       = trimsuffix(substr(strcontains(var.release_name, "chorus") ? var.release_name : "${var.release_name}-chorus", 0, 30), "-")
  api_key_secret = "api-key-secret"
  static_ip_name = var.ingress_static_ip_name != "" ? var.ingress_static_ip_name : "${var.name}-ingress-ip"
  storage_class  = local.aws ? "gp3" : "standard-rwo"

  # --- AWS: node groups for terraform-aws-modules/eks ------------------------------------------------------------
  gpu_label = { "nvidia.com/gpu.present" = "true" }
  eks_managed_node_groups = local.aws ? {
    for k, g in var.node_groups : k => {
      name           = "${var.name}-${k}"
      ami_type       = g.ami_type
      instance_types = g.instance_types
      min_size       = g.min_size
      max_size       = g.max_size
      desired_size   = g.desired_size
      labels         = merge(g.labels, strcontains(g.ami_type, "NVIDIA") ? local.gpu_label : {})
      taints         = g.taints
      # Encrypted gp3 root volume of disk_size GiB (the module's launch template ignores disk_size itself).
      block_device_mappings = {
        xvda = {
          device_name = "/dev/xvda"
          ebs = {
            volume_size           = g.disk_size
            volume_type           = "gp3"
            encrypted             = true
            delete_on_termination = true
          }
        }
      }
      # IMDSv2 only, one hop: pods cannot reach the node's instance role (they use IRSA).
      metadata_options = {
        http_endpoint               = "enabled"
        http_tokens                 = "required"
        http_put_response_hop_limit = 1
      }
    }
  } : {}
  aws_has_gpu = local.aws && anytrue([for g in values(var.node_groups) : strcontains(g.ami_type, "NVIDIA")])

  # --- GCP: node pools for terraform-google-modules/kubernetes-engine ---------------------------------------------
  gke_node_pools = local.gcp ? [
    for k, p in var.node_pools : merge({
      name               = k
      machine_type       = p.machine_type
      node_locations     = var.zone
      initial_node_count = p.initial_node_count
      disk_size_gb       = p.disk_size_gb
      disk_type          = "pd-balanced"
      image_type         = "COS_CONTAINERD"
      spot               = p.spot
      auto_repair        = true
      auto_upgrade       = true
      enable_secure_boot = true
      },
      var.enable_cluster_autoscaler ? { autoscaling = true, min_count = p.min_count, max_count = p.max_count } : null,
      var.enable_cluster_autoscaler ? null : { autoscaling = false, node_count = p.initial_node_count },
      # GKE installs and updates the NVIDIA driver (gpu_driver_version) and runs the device plugin itself; it taints
      # GPU nodes nvidia.com/gpu=present:NoSchedule, which the chart's GPU pools tolerate.
      p.accelerator_count > 0 ? {
        accelerator_type   = p.accelerator_type
        accelerator_count  = p.accelerator_count
        gpu_driver_version = "LATEST"
    } : null)
  ] : []
  gke_node_pools_labels = merge({ all = {} }, {
    for k, p in var.node_pools : k => p.accelerator_count > 0 ? local.gpu_label : {} if local.gcp
  })
  gcp_has_gpu = local.gcp && anytrue([for p in values(var.node_pools) : p.accelerator_count > 0])

  # --- the chart's values ----------------------------------------------------------------------------------------
  ingress = merge(
    {
      enabled = var.enable_ingress
      routes  = var.ingress_route != "" ? [var.ingress_route] : []
    },
    local.aws ? { certificateArn = var.certificate_arn } : {},
    local.gcp ? { globalStaticIpName = var.enable_ingress ? local.static_ip_name : "" } : {},
  )

  artifacts = merge({ location = local.artifacts_location }, var.enable_hot_reload ? {
    hotReload             = true
    reloadIntervalSeconds = 5
    # The object store client reads the bucket's region from AWS_REGION (the IRSA webhook may not set it).
    extraEnv = local.aws ? { AWS_REGION = var.region } : {}
  } : null)

  values = {
    clusterName = var.name
    infra = {
      provider        = var.platform
      authenticate    = var.license_mode == "connected"
      imageRegistry   = var.image_registry
      imagePullSecret = var.image_pull_secret
      serviceAccount = {
        create      = true
        name        = local.service_account_name
        annotations = var.service_account_annotations
      }
    }
    release = {
      version    = var.release_version
      releaseTag = var.release_tag
    }
    filesystem = {
      storageClass = { name = local.storage_class }
    }
    ingress = local.ingress
    metrics = {
      enabled = var.enable_metrics
    }
    legacyComponents = {
      enabled = false
    }
    licenseProxy = {
      # Licenses, tenant keys and the usage ledger survive restarts and upgrades (required in air-gapped mode).
      persistence = { enabled = true }
    }
    artifacts = local.artifacts
    workers   = var.workers
  }

  # Sensitive values go in a second values document, so that the first one stays readable in plans.
  license_values = {
    licenseProxy = merge(
      var.license_seed != "" ? { seedLicense = var.license_seed } : {},
      length(var.license_trusted_keys) > 0 ? { trustedKeys = var.license_trusted_keys } : {},
    )
  }
}
