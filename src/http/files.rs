//! The routes of a user's files: list, upload, read, rename and describe, delete, the
//! session's active file, profile, preview and content (stored bytes or a conversion).

use std::sync::Arc;

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::{decode, download, first_of, json, json_body, parse_json, query, upload, MapErrReject};
use crate::error::Error;
use crate::model::{ListQuery, UserId};
use crate::service::FileService;

/// Every route under `/api/v1/files` but queries and exploring.
pub(super) fn routes(service: Arc<FileService>, user: BoxedFilter<(UserId,)>) -> BoxedFilter<(Response,)> {
    let with_service = warp::any().map(move || service.clone());
    // Path first, then method: an unknown path is 404, a known one with the wrong method 405.
    let files = warp::path!("api" / "v1" / "files");
    let active = warp::path!("api" / "v1" / "files" / "active" / String);
    let one_file = warp::path!("api" / "v1" / "files" / String);
    let content = warp::path!("api" / "v1" / "files" / String / "content");
    let profile = warp::path!("api" / "v1" / "files" / String / "profile");
    let preview = warp::path!("api" / "v1" / "files" / String / "preview");
    let get_or_head = warp::get().map(|| false).or(warp::head().map(|| true)).unify();

    let list = files
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and(warp::query::<Vec<(String, String)>>())
        .and_then(|user, service: Arc<FileService>, params| {
            async move {
                let (body, total) = service.list_files_json(user, list_query(params)?).await?;
                let mut response = Response::new(body.into());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                response.headers_mut().insert("x-total-count", total.into());
                Ok::<_, Error>(response)
            }
            .map_err_reject()
        });

    let create = files
        .and(warp::post())
        .and(user.clone())
        .and(with_service.clone())
        .and(warp::multipart::form().max_length(None))
        .and_then(|user, service: Arc<FileService>, form| {
            async move {
                let record = upload::handle(&service, user, form).await?;
                Ok::<_, Error>(json(StatusCode::CREATED, &record.to_read()))
            }
            .map_err_reject()
        });

    let get_active = active
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|session: String, user, service: Arc<FileService>| {
            async move {
                let record = service.get_active(user, &decode(&session)).await?;
                Ok::<_, Error>(json(StatusCode::OK, &record.to_read()))
            }
            .map_err_reject()
        });

    let set_active = active
        .and(warp::post())
        .and(user.clone())
        .and(with_service.clone())
        .and(json_body())
        .and_then(|session: String, user, service: Arc<FileService>, body: bytes::Bytes| {
            async move {
                #[derive(Deserialize)]
                struct ActiveFile {
                    file_name: String,
                }
                let body: ActiveFile = parse_json(&body, "{\"file_name\": \"…\"}")?;
                let record = service.set_active(user, &decode(&session), &body.file_name).await?;
                Ok::<_, Error>(json(StatusCode::OK, &record.to_read()))
            }
            .map_err_reject()
        });

    let clear_active = active
        .and(warp::delete())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|session: String, user, service: Arc<FileService>| {
            async move {
                service.clear_active(user, &decode(&session)).await?;
                Ok::<_, Error>(StatusCode::NO_CONTENT.into_response())
            }
            .map_err_reject()
        });

    let get_file = one_file
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|name: String, user, service: Arc<FileService>| {
            async move {
                let record = service.get_file(user, &decode(&name)).await?;
                Ok::<_, Error>(json(StatusCode::OK, &record.to_read()))
            }
            .map_err_reject()
        });

    let update_file = one_file
        .and(warp::patch())
        .and(user.clone())
        .and(with_service.clone())
        .and(json_body())
        .and_then(|name: String, user, service: Arc<FileService>, body: bytes::Bytes| {
            async move {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Update {
                    file_name: Option<String>,
                    description: Option<String>,
                }
                let body: Update = parse_json(&body, "{\"file_name\"?: \"…\", \"description\"?: \"…\"}")?;
                let record = service
                    .update_file(user, &decode(&name), body.file_name, body.description)
                    .await?;
                Ok::<_, Error>(json(StatusCode::OK, &record.to_read()))
            }
            .map_err_reject()
        });

    let delete = one_file
        .and(warp::delete())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|name: String, user: UserId, service: Arc<FileService>| {
            async move {
                let record = service.delete_file(user, &decode(&name)).await?;
                Ok::<_, Error>(json(StatusCode::OK, &record.to_read()))
            }
            .map_err_reject()
        });

    let get_profile = profile
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and_then(|name: String, user, service: Arc<FileService>| {
            async move {
                let profile = service.get_profile(user, &decode(&name)).await?;
                let mut response = profile.into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Error>(response)
            }
            .map_err_reject()
        });

    let get_preview = preview
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and(warp::query::<Vec<(String, String)>>())
        .and_then(
            |name: String, user, service: Arc<FileService>, params: Vec<(String, String)>| {
                async move {
                    let rows = match params.iter().find(|(k, _)| k == "rows") {
                        None => 20,
                        Some((_, v)) => v.parse().map_err(|_| {
                            Error::invalid("invalid_rows", format!("rows must be a whole number, not {v:?}"))
                        })?,
                    };
                    let sheet = params.iter().find(|(k, _)| k == "sheet").map(|(_, v)| v.clone());
                    let preview = service.preview(user, &decode(&name), rows, sheet).await?;
                    Ok::<_, Error>(json(StatusCode::OK, &preview))
                }
                .map_err_reject()
            },
        );

    let download = content
        .and(get_or_head)
        .and(user.clone())
        .and(with_service.clone())
        .and(warp::header::headers_cloned())
        .and(warp::query::<Vec<(String, String)>>())
        .and_then(
            |name: String, head: bool, user, service: Arc<FileService>, headers, params: Vec<(String, String)>| {
                async move {
                    let name = decode(&name);
                    // `?format=`: the file converted; without it, the stored bytes.
                    if let Some((_, format)) = params.iter().find(|(k, _)| k == "format") {
                        return query::conversion(&service, user, &name, format, head).await;
                    }
                    let (record, file) = service.open_content(user, &name).await?;
                    Ok::<_, Error>(download::respond(&record, file, &headers, head))
                }
                .map_err_reject()
            },
        );

    first_of(vec![
        list.boxed(),
        create.boxed(),
        get_active.boxed(),
        set_active.boxed(),
        clear_active.boxed(),
        get_file.boxed(),
        update_file.boxed(),
        delete.boxed(),
        download.boxed(),
        get_profile.boxed(),
        get_preview.boxed(),
    ])
}

/// `limit`, `offset` and `name_prefix` of `GET /files/`; other parameters are ignored.
fn list_query(params: Vec<(String, String)>) -> Result<ListQuery, Error> {
    let mut query = ListQuery::default();
    for (key, value) in params {
        // At most i64::MAX: databases take signed offsets.
        let number = |what: &str| {
            value
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(|n| n as u64)
                .ok_or_else(|| Error::invalid("invalid_query", format!("{what} must be a whole number, not {value:?}")))
        };
        match key.as_str() {
            "limit" => query.limit = Some(number("limit")?.min(u32::MAX as u64) as u32),
            "offset" => query.offset = number("offset")?,
            "name_prefix" => query.name_prefix = Some(value),
            _ => {}
        }
    }
    Ok(query)
}
