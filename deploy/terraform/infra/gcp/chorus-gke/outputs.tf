output "cluster_name" {
  description = "Name of the GKE cluster."
  value       = module.gke.name
}

output "kubeconfig_command" {
  description = "Adds the cluster to your kubeconfig, for the kubectl checks in docs/operations.md (Terraform, Verify)."
  value       = "gcloud container clusters get-credentials ${module.gke.name} --zone ${var.zone} --project ${var.project_id}"
}

output "namespace" {
  description = "Namespace of the Chorus release."
  value       = kubernetes_namespace_v1.chorus.metadata[0].name
}

output "ingress_address" {
  description = "The global static IP of the load balancer: point ingress_route's DNS (an A record) at it; the managed certificate becomes Active after that (up to an hour)."
  value       = local.ingress_address
}

output "ingress_static_ip_name" {
  description = "Name of the global static IP the Ingress uses."
  value       = module.chorus_values.ingress_static_ip_name
}

output "ingress_url" {
  description = "The API's public URL."
  value       = var.enable_ingress ? "https://${var.ingress_route}" : ""
}

output "artifact_bucket" {
  description = "The artifact bucket (voices, dictionaries, voice models under models/), empty without enable_hot_reload."
  value       = module.chorus_values.artifacts_location
}

output "chorus_service_account" {
  description = "Google service account the Chorus pods act as through Workload Identity."
  value       = var.enable_hot_reload ? google_service_account.chorus[0].email : ""
}
