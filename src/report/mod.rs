//! `cachefill report`: a result as one self-contained HTML page (inline SVG charts drawn with
//! plotters, inline CSS, no scripts, nothing fetched).

pub(crate) mod charts;
mod page;
mod timeline;

pub(crate) use page::render;
