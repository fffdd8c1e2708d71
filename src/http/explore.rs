//! `GET /files/{name}/rows` and `GET /files/{name}/facets`: a page of a file's rows or its
//! facets, filtered (`where`), searched (`q`) and sorted (`orderby`); `?format=` on rows
//! downloads the whole view.

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::query::{output_format, streamed};
use super::{decode, json, MapErrReject};
use crate::error::Error;
use crate::model::UserId;
use crate::query::view::ViewSpec;
use crate::service::explore::{DEFAULT_FACET_VALUES, DEFAULT_PAGE_ROWS};
use crate::service::FileService;

/// A view's parameters as sent.
#[derive(Default)]
struct ViewParams {
    spec: ViewSpec,
    offset: u64,
    limit: Option<usize>,
    format: Option<String>,
}

impl ViewParams {
    /// Unknown parameters are ignored, as on the other routes; a number that is not one is 422.
    fn parse(params: Vec<(String, String)>) -> Result<ViewParams, Error> {
        let mut view = ViewParams::default();
        for (key, value) in params {
            let number = |what: &str| {
                value
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(|n| n as u64)
                    .ok_or_else(|| {
                        Error::invalid("invalid_query", format!("{what} must be a whole number, not {value:?}"))
                    })
            };
            match key.as_str() {
                "offset" => view.offset = number("offset")?,
                "limit" => view.limit = Some(usize::try_from(number("limit")?).unwrap_or(usize::MAX)),
                "where" => view.spec.filter = Some(value),
                "orderby" => view.spec.order_by = Some(value),
                "q" => view.spec.search = Some(value),
                "columns" => view.spec.columns = Some(value),
                "format" => view.format = Some(value),
                _ => {}
            }
        }
        Ok(view)
    }
}

pub(super) fn routes(service: Arc<FileService>, user: BoxedFilter<(UserId,)>) -> BoxedFilter<(Response,)> {
    let with_service = warp::any().map(move || service.clone());
    let rows = warp::path!("api" / "v1" / "files" / String / "rows")
        .and(warp::get())
        .and(user.clone())
        .and(with_service.clone())
        .and(warp::query::<Vec<(String, String)>>())
        .and_then(|name: String, user, service: Arc<FileService>, params| {
            async move {
                let name = decode(&name);
                let view = ViewParams::parse(params)?;
                if let Some(format) = &view.format {
                    let format = output_format(format)?;
                    let download = service.view_download(user, &name, view.spec, format).await?;
                    return Ok::<_, Error>(streamed(download));
                }
                let limit = view.limit.unwrap_or(DEFAULT_PAGE_ROWS);
                let page = service.view_rows(user, &name, view.spec, view.offset, limit).await?;
                Ok(json(StatusCode::OK, &page))
            }
            .map_err_reject()
        })
        .boxed();
    let facets = warp::path!("api" / "v1" / "files" / String / "facets")
        .and(warp::get())
        .and(user)
        .and(with_service)
        .and(warp::query::<Vec<(String, String)>>())
        .and_then(|name: String, user, service: Arc<FileService>, params| {
            async move {
                let name = decode(&name);
                let mut view = ViewParams::parse(params)?;
                let columns = view.spec.columns.take();
                let limit = view.limit.unwrap_or(DEFAULT_FACET_VALUES);
                let facets = service.view_facets(user, &name, view.spec, columns, limit).await?;
                Ok::<_, Error>(json(StatusCode::OK, &facets))
            }
            .map_err_reject()
        })
        .boxed();
    rows.or(facets).unify().boxed()
}
