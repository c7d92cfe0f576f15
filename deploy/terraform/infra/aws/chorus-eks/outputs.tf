output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.eks.cluster_name
}

output "kubeconfig_command" {
  description = "Adds the cluster to your kubeconfig, for the kubectl checks in docs/operations.md (Terraform, Verify)."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.eks.cluster_name}"
}

output "namespace" {
  description = "Namespace of the Chorus release."
  value       = kubernetes_namespace_v1.chorus.metadata[0].name
}

output "ingress_address" {
  description = "Hostname of the ALB in front of the API: point ingress_route's DNS (a CNAME) at it. Empty until the AWS Load Balancer Controller has made the ALB (a minute or two after the first apply: run `terraform apply` again, or `kubectl -n NAMESPACE get ingress`)."
  value       = var.enable_ingress ? try(data.kubernetes_ingress_v1.chorus[0].status[0].load_balancer[0].ingress[0].hostname, "") : ""
}

output "ingress_url" {
  description = "The API's public URL."
  value       = var.enable_ingress ? "https://${var.ingress_route}" : ""
}

output "artifact_bucket" {
  description = "The artifact bucket (voices, dictionaries, voice models under models/), empty without enable_hot_reload."
  value       = module.chorus_values.artifacts_location
}

output "chorus_role_arn" {
  description = "IAM role the Chorus pods assume through IRSA to use the bucket."
  value       = var.enable_hot_reload ? module.chorus_irsa[0].arn : ""
}

data "kubernetes_ingress_v1" "chorus" {
  count = var.enable_ingress ? 1 : 0

  metadata {
    name      = module.chorus_values.ingress_name
    namespace = kubernetes_namespace_v1.chorus.metadata[0].name
  }

  depends_on = [helm_release.chorus]
}
