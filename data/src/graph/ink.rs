//! Reading plots back, for checks of what was drawn (tests of `magi graph` here and in the
//! CLI): behind the `png-check` feature, so that the PNG decoder is no part of the library.
use std::path::Path;

use super::GraphError;

/// What a PNG holds, for checks: its size and how many pixels of a region are not white.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PngInk {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Non-white pixels inside the region.
    pub ink: u64,
}

/// The region inside the axes of a [`SIZE`] plot (x0, y0, x1, y1), clear of labels.
pub const PLOT_REGION: (u32, u32, u32, u32) = (110, 70, 715, 530);

/// Reads a PNG and counts the non-white pixels in `region` (x0, y0, x1, y1, exclusive ends).
pub fn png_ink(path: &Path, region: (u32, u32, u32, u32)) -> Result<PngInk, GraphError> {
    let img = image::open(path)
        .map_err(|e| GraphError::Draw {
            path: path.display().to_string(),
            message: format!("cannot read back: {e}"),
        })?
        .to_rgb8();
    let (width, height) = img.dimensions();
    let (x0, y0, x1, y1) = region;
    let ink = img
        .enumerate_pixels()
        .filter(|(x, y, p)| (x0..x1).contains(x) && (y0..y1).contains(y) && p.0 != [255, 255, 255])
        .count() as u64;
    Ok(PngInk { width, height, ink })
}
