//! Cursor pagination of the list endpoints (spec 2.5, "Pagination contract").
//!
//! Items are ordered by id. `starting_after=<id>` gives the items after that id, `ending_before=<id>` the items
//! before it (the `limit` closest to it). A cursor need not exist: the order is by comparison, so a cursor past
//! the end gives `data: []`, which is what ends the SDKs' auto-paging (they ignore `has_more`).
//!
//! The response is `{"data": [...], "has_more": bool, "next_page": id|null}`; `next_page` is the cursor for the
//! next page in the same direction (the last item's id going forward, the first item's going backward), set only
//! when `has_more`.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::middleware::RequestId;

/// Items per page when the client does not say.
pub const DEFAULT_LIMIT: usize = 10;
/// Largest `limit` accepted.
pub const MAX_LIMIT: usize = 100;

/// The query of a list request: the pagination parameters plus every other parameter (filters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: usize,
    pub starting_after: Option<String>,
    pub ending_before: Option<String>,
    /// The other parameters, in order (e.g. `q`, `gender`, `expand[]`).
    pub params: Vec<(String, String)>,
}

impl ListQuery {
    /// The first value of a non-pagination parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A boolean parameter (`true`/`false`, as the SDKs encode them); a 400 for anything else.
    pub fn bool_param(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.param(name) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(other) => Err(ApiError::invalid(format!("{name} must be true or false, got '{other}'"))),
        }
    }

    fn parse(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut query =
            ListQuery { limit: DEFAULT_LIMIT, starting_after: None, ending_before: None, params: vec![] };
        for (key, value) in pairs {
            match key.as_str() {
                "limit" => {
                    query.limit = value
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::invalid(format!(
                                "limit must be an integer from 1 to {MAX_LIMIT}, got '{value}'"
                            ))
                        })?;
                }
                "starting_after" if !value.is_empty() => query.starting_after = Some(value),
                "ending_before" if !value.is_empty() => query.ending_before = Some(value),
                _ => query.params.push((key, value)),
            }
        }
        if query.starting_after.is_some() && query.ending_before.is_some() {
            return Err(ApiError::invalid("give starting_after or ending_before, not both"));
        }
        Ok(query)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request_id = RequestId::from_extensions(&parts.extensions);
        let pairs = match parts.uri.query() {
            None => Vec::new(),
            Some(_) => {
                Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
                    .map_err(|e| ApiError::invalid(format!("malformed query string: {e}")))
                    .map_err(|e| e.with_request_id(request_id.as_str()))?
                    .0
            }
        };
        Self::parse(pairs).map_err(|e| e.with_request_id(request_id.as_str()))
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    pub next_page: Option<String>,
}

impl<T> Page<T> {
    /// Converts the items, keeping the cursors.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            data: self.data.into_iter().map(f).collect(),
            has_more: self.has_more,
            next_page: self.next_page,
        }
    }
}

/// The page of `items` (sorted by `id`) that `query` asks for.
pub fn paginate<T>(mut items: Vec<T>, id: impl Fn(&T) -> &str, query: &ListQuery) -> Page<T> {
    items.sort_by(|a, b| id(a).cmp(id(b)));
    if let Some(before) = query.ending_before.as_deref() {
        let end = items.partition_point(|item| id(item) < before);
        let start = end.saturating_sub(query.limit);
        let has_more = start > 0;
        let data: Vec<T> = items.drain(start..end).collect();
        let next_page = if has_more { data.first().map(|item| id(item).to_owned()) } else { None };
        return Page { data, has_more, next_page };
    }
    let start =
        query.starting_after.as_deref().map_or(0, |after| items.partition_point(|item| id(item) <= after));
    let end = (start + query.limit).min(items.len());
    let has_more = end < items.len();
    let data: Vec<T> = items.drain(start..end).collect();
    let next_page = if has_more { data.last().map(|item| id(item).to_owned()) } else { None };
    Page { data, has_more, next_page }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Result<ListQuery, ApiError> {
        ListQuery::parse(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    fn ids(page: &Page<String>) -> Vec<&str> {
        page.data.iter().map(String::as_str).collect()
    }

    #[test]
    fn forward_backward_and_past_the_end() {
        let items: Vec<String> = ["e", "a", "c", "b", "d"].iter().map(|s| (*s).to_owned()).collect();
        let page = |pairs: &[(&str, &str)]| paginate(items.clone(), |s| s.as_str(), &query(pairs).unwrap());

        let p = page(&[("limit", "2")]);
        assert_eq!((ids(&p), p.has_more, p.next_page.as_deref()), (vec!["a", "b"], true, Some("b")));
        let p = page(&[("limit", "2"), ("starting_after", "b")]);
        assert_eq!((ids(&p), p.has_more), (vec!["c", "d"], true));
        let p = page(&[("limit", "2"), ("starting_after", "d")]);
        assert_eq!((ids(&p), p.has_more, p.next_page.as_deref()), (vec!["e"], false, None));
        let p = page(&[("starting_after", "e")]);
        assert!(p.data.is_empty() && !p.has_more);
        let p = page(&[("starting_after", "zzz")]);
        assert!(p.data.is_empty());
        let p = page(&[("limit", "2"), ("ending_before", "d")]);
        assert_eq!((ids(&p), p.has_more, p.next_page.as_deref()), (vec!["b", "c"], true, Some("b")));
        let p = page(&[("ending_before", "a")]);
        assert!(p.data.is_empty() && !p.has_more);
    }

    #[test]
    fn bad_queries() {
        for bad in ["0", "101", "ten", "-1", ""] {
            assert_eq!(query(&[("limit", bad)]).unwrap_err().status.as_u16(), 400, "{bad}");
        }
        assert!(query(&[("starting_after", "a"), ("ending_before", "b")]).is_err());
        let q = query(&[("q", "joe"), ("gender", "feminine"), ("is_owner", "true")]).unwrap();
        assert_eq!(q.param("q"), Some("joe"));
        assert_eq!(q.bool_param("is_owner").unwrap(), Some(true));
        assert!(query(&[("is_owner", "maybe")]).unwrap().bool_param("is_owner").is_err());
    }
}
