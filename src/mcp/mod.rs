//! The MCP server: the caller's files as tools and resources for LLM agents, served over
//! streamable HTTP at `/mcp` beside the API ([`Endpoint`]) and bridged to stdio for desktop
//! agents by `file-service mcp` ([`run_bridge`]).
//!
//! Layout: `tools` (the six tools, their schemas, caps and text renderings), `resources`
//! (each file's summary as a Markdown resource), `endpoint` (authentication, the Origin check
//! and rmcp's HTTP service), `bridge` (stdio ⇄ a server's `/mcp`). Every answer comes from
//! [`FileService`], as the REST routes' answers do.

mod bridge;
mod endpoint;
mod resources;
mod tools;

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CacheScope, Implementation, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{tool_handler, ErrorData, RoleServer, ServerHandler};

use crate::model::UserId;
use crate::service::FileService;

pub use bridge::run_bridge;
pub use endpoint::Endpoint;

/// How much one tool result may hold (`MCP_MAX_ROWS`, `MCP_MAX_CHARS`).
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Rows (or listed files) in one result.
    pub max_rows: usize,
    /// Characters of one result's structured content, and of its text.
    pub max_chars: usize,
}

/// The user a request's bearer token speaks for; the endpoint puts it into the HTTP
/// request's extensions, where rmcp hands it on to the handler.
#[derive(Debug, Clone, Copy)]
struct Caller(UserId);

/// The caller of an MCP request (`None` only if a request reached the handler without
/// passing through [`Endpoint`]).
fn caller(ctx: &RequestContext<RoleServer>) -> Option<UserId> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .map(|c| c.0)
}

/// Whether the peer's protocol has cache hints (2026-07-28 on), which it then requires on
/// listings and reads: no caching, and per-user data private to the user.
fn cache_hints(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version()
        .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
}

/// One MCP session's handler: tools and resources over the service.
#[derive(Clone)]
pub struct FileMcp {
    service: Arc<FileService>,
    caps: Caps,
    tool_router: ToolRouter<FileMcp>,
}

impl FileMcp {
    pub fn new(service: Arc<FileService>, caps: Caps) -> FileMcp {
        FileMcp {
            service,
            caps,
            tool_router: FileMcp::tool_router(),
        }
    }
}

const INSTRUCTIONS: &str = "file-service keeps the user's dataset files (CSV, TSV, Excel, Parquet, JSON, …), \
a summary and a profile of each, and which file is active in each chat session. \
Start with get_active_file (when you have a session id) or list_files; describe_file gives the summary and \
per-column statistics; read_rows pages through the rows; query runs one SQL SELECT over a file (the table \
`data`; the user's other files by their quoted names). Results are capped: when `truncated` is true, the \
text says how to get the rest. Each file's summary is also a resource, file-service://files/{name}/summary.";

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FileMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().build())
            .with_server_info(Implementation::new("file-service", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut result = resources::list(&self.service, caller(&ctx), request.and_then(|r| r.cursor)).await?;
        if cache_hints(&ctx) {
            result = result.with_ttl_ms(0).with_cache_scope(CacheScope::Private);
        }
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let mut result = ListResourceTemplatesResult::with_all_items(vec![resources::template()]);
        if cache_hints(&ctx) {
            result = result.with_ttl_ms(0).with_cache_scope(CacheScope::Public);
        }
        Ok(result)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let mut result = resources::read(&self.service, caller(&ctx), &request.uri).await?;
        if cache_hints(&ctx) {
            result = result.with_ttl_ms(0).with_cache_scope(CacheScope::Private);
        }
        Ok(result.into())
    }
}
