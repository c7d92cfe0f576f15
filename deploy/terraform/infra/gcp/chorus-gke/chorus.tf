# Chorus: its artifact bucket with Workload Identity, namespace, API key Secret, and the chart from this repository.

resource "google_storage_bucket" "artifacts" {
  count = var.enable_hot_reload ? 1 : 0

  name                        = module.chorus_values.artifact_bucket
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  #checkov:skip=CKV_GCP_62:Access logs need a second bucket; Cloud Audit Logs (Data Access) cover audits where required.
}

resource "kubernetes_namespace_v1" "chorus" {
  metadata {
    name = var.namespace
  }

  depends_on = [module.gke]
}

# Workload Identity: a Google service account for the pods, which the Kubernetes ServiceAccount the chart creates
# (named by chorus-values, annotated with this account's e-mail) may act as; it may read and write the bucket's
# objects, nothing else.
resource "google_service_account" "chorus" {
  count = var.enable_hot_reload ? 1 : 0

  account_id   = "${substr(var.name, 0, 23)}-chorus"
  display_name = "Chorus pods of ${var.name} (${var.namespace}/${module.chorus_values.service_account_name})"
}

resource "google_service_account_iam_member" "chorus_workload_identity" {
  count = var.enable_hot_reload ? 1 : 0

  service_account_id = google_service_account.chorus[0].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.namespace}/${module.chorus_values.service_account_name}]"

  depends_on = [module.gke] # the workload pool PROJECT.svc.id.goog exists once the cluster does
}

resource "google_storage_bucket_iam_member" "chorus_objects" {
  count = var.enable_hot_reload ? 1 : 0

  bucket = google_storage_bucket.artifacts[0].name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.chorus[0].email}"
}

# The familiar API key Secret: CARTESIA_API_KEY is the clients' key, CONTAINER_KEY the license proxy's token.
resource "kubernetes_secret_v1" "api_keys" {
  metadata {
    name      = module.chorus_values.api_key_secret
    namespace = kubernetes_namespace_v1.chorus.metadata[0].name
  }
  data = merge(
    { CARTESIA_API_KEY = var.chorus_api_key },
    var.chorus_container_key != "" ? { CONTAINER_KEY = var.chorus_container_key } : {},
  )
}

resource "helm_release" "chorus" {
  name      = var.release_name
  chart     = "${path.module}/../../../../helm/chorus"
  namespace = kubernetes_namespace_v1.chorus.metadata[0].name

  values = [
    module.chorus_values.values_yaml,
    module.chorus_values.license_values_yaml,
  ]

  # Wait for every Deployment to be Ready (workers load their model first); a failed upgrade rolls back.
  wait            = true
  atomic          = true
  cleanup_on_fail = true
  timeout         = 1200
  max_history     = 10

  depends_on = [
    kubernetes_secret_v1.api_keys,
    google_service_account_iam_member.chorus_workload_identity,
    google_storage_bucket_iam_member.chorus_objects,
    google_compute_global_address.ingress,
    helm_release.kube_prometheus_stack,
    helm_release.keda,
  ]
}
