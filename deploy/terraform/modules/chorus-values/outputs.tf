output "values" {
  description = "The Chorus chart's values (everything but the license secrets), as an object."
  value       = local.values
}

output "values_yaml" {
  description = "The same values as YAML, the first entry of the chart's helm_release values."
  value       = yamlencode(local.values)
}

output "license_values_yaml" {
  description = "The license proxy's seed license and trusted keys as YAML, the second entry of the chart's helm_release values."
  value       = yamlencode(local.license_values)
  sensitive   = true
}

output "artifact_bucket" {
  description = "Name of the artifact bucket the root creates when enable_hot_reload (empty otherwise)."
  value       = var.enable_hot_reload ? local.artifact_bucket : ""
}

output "artifacts_location" {
  description = "The chart's artifacts.location: s3://BUCKET/chorus or gs://BUCKET/chorus, empty without enable_hot_reload."
  value       = local.artifacts_location
}

output "service_account_name" {
  description = "Name of the Kubernetes ServiceAccount the Chorus pods run as (created by the chart, annotated with service_account_annotations)."
  value       = local.service_account_name
}

output "api_key_secret" {
  description = "Name of the Secret holding CARTESIA_API_KEY (clients' key) and CONTAINER_KEY, created by the root."
  value       = local.api_key_secret
}

output "eks_managed_node_groups" {
  description = "AWS: node_groups in the shape of terraform-aws-modules/eks's eks_managed_node_groups (GPU groups labelled, encrypted gp3 root volumes, IMDSv2)."
  value       = local.eks_managed_node_groups
}

output "gke_node_pools" {
  description = "GCP: node_pools in the shape of terraform-google-modules/kubernetes-engine's node_pools (managed GPU driver on accelerator pools)."
  value       = local.gke_node_pools
}

output "gke_node_pools_labels" {
  description = "GCP: node labels by pool for terraform-google-modules/kubernetes-engine's node_pools_labels (GPU pools labelled nvidia.com/gpu.present=true)."
  value       = local.gke_node_pools_labels
}

output "gpu_nodes" {
  description = "Whether the cluster has GPU nodes (AWS: install the NVIDIA device plugin on them)."
  value       = local.aws_has_gpu || local.gcp_has_gpu
}

output "ingress_static_ip_name" {
  description = "GCP: the global static IP's name the Ingress uses (empty without enable_ingress)."
  value       = local.gcp && var.enable_ingress ? local.static_ip_name : ""
}

output "storage_class" {
  description = "StorageClass of the license proxy's volume (gp3, made by the root on EKS; standard-rwo on GKE)."
  value       = local.storage_class
}

output "ingress_name" {
  description = "Name of the chart's Ingress (the chart's full name)."
  value       = local.fullname
}
