# The values built from the GCP example. Run from deploy/terraform/modules/chorus-values:
#   terraform test -filter=tests/gcp.tftest.hcl -var-file=../../gcp-terraform.tfvars.example

variables {
  platform = "gcp"
}

run "gcp_example_values" {
  command = plan

  assert {
    condition     = output.values.workers == var.workers
    error_message = "workers must reach the chart unchanged."
  }
  assert {
    condition     = output.values.workers[0].workerArgs.gpuType == "nvidia.com/gpu" && yamldecode(output.values_yaml).workers[0].autoscaling.threshold == "0.6"
    error_message = "the example's GPU pool (gpuType nvidia.com/gpu, threshold \"0.6\") is not in the values."
  }
  assert {
    condition     = output.values.infra.provider == "gcp" && output.values.clusterName == "chorus-prod" && output.values.filesystem.storageClass.name == "standard-rwo"
    error_message = "infra.provider, clusterName or the StorageClass is wrong."
  }
  assert {
    condition = jsonencode(output.values.ingress) == jsonencode({
      enabled            = true
      routes             = ["tts.example.com"]
      globalStaticIpName = "chorus-ingress-ip"
    })
    error_message = "the GKE ingress values (route, static IP name, no certificate ARN) are wrong."
  }
  assert {
    condition     = output.ingress_static_ip_name == "chorus-ingress-ip"
    error_message = "the root must create or read the static IP the Ingress names."
  }
  assert {
    condition = (output.values.artifacts.location == "gs://my-project-chorus-prod-chorus/chorus" && output.values.artifacts.hotReload
    && length(output.values.artifacts.extraEnv) == 0 && output.artifact_bucket == "my-project-chorus-prod-chorus")
    error_message = "the GCS artifact store values are wrong."
  }
  assert {
    condition = jsonencode([for p in output.gke_node_pools : p if p.name == "gpu"][0]) == jsonencode({
      name               = "gpu"
      machine_type       = "g2-standard-8"
      node_locations     = "us-central1-a"
      initial_node_count = "1"
      disk_size_gb       = "200"
      disk_type          = "pd-balanced"
      image_type         = "COS_CONTAINERD"
      spot               = "false"
      auto_repair        = "true"
      auto_upgrade       = "true"
      enable_secure_boot = "true"
      autoscaling        = "true"
      min_count          = "1"
      max_count          = "10"
      accelerator_type   = "nvidia-l4"
      accelerator_count  = "1"
      gpu_driver_version = "LATEST"
    })
    error_message = "the gpu node pool must carry the L4 accelerator with GKE's managed driver and autoscale 1..10."
  }
  assert {
    condition     = !contains(keys([for p in output.gke_node_pools : p if p.name == "default"][0]), "accelerator_type")
    error_message = "the default pool has no accelerator."
  }
  assert {
    condition     = jsonencode(output.gke_node_pools_labels) == jsonencode({ all = {}, default = {}, gpu = { "nvidia.com/gpu.present" = "true" } })
    error_message = "GPU pools are labelled nvidia.com/gpu.present=true, others not."
  }
  assert {
    condition     = output.gpu_nodes && length(output.eks_managed_node_groups) == 0
    error_message = "a GCP cluster with a gpu pool has GPU nodes and no EKS node groups."
  }
}

run "gcp_fixed_size_pools_without_cluster_autoscaler" {
  command = plan

  variables {
    enable_cluster_autoscaler = false
  }

  assert {
    condition = alltrue([for p in output.gke_node_pools : p.autoscaling == "false" && p.node_count == p.initial_node_count
    && !contains(keys(p), "min_count")])
    error_message = "without the cluster autoscaler each pool keeps initial_node_count nodes."
  }
}

run "gcp_static_ip_name_defaults_to_the_cluster_name" {
  command = plan

  variables {
    ingress_static_ip_name = ""
  }

  assert {
    condition     = output.values.ingress.globalStaticIpName == "chorus-prod-ingress-ip" && output.ingress_static_ip_name == "chorus-prod-ingress-ip"
    error_message = "an empty ingress_static_ip_name means <name>-ingress-ip."
  }
}

run "gcp_bucket_name_override" {
  command = plan

  variables {
    artifact_bucket = "acme-tts-artifacts"
  }

  assert {
    condition     = output.values.artifacts.location == "gs://acme-tts-artifacts/chorus" && output.artifact_bucket == "acme-tts-artifacts"
    error_message = "artifact_bucket names the bucket."
  }
}
