//! `cachefill report`: a result as one self-contained HTML page (inline SVG charts drawn with
//! plotters, inline CSS, no scripts, nothing fetched).

pub mod charts;
mod page;
mod timeline;

pub use page::{escape, render};
