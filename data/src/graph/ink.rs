//! Reading plots back, for checks of what was drawn (tests of `magi graph` here and in the
//! CLI): behind the `png-check` feature, so that test-only code is no part of the library.
use std::path::Path;

use super::GraphError;

/// A PNG's pixels as 8-bit RGB, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` pixels, the top row first.
    pub rgb: Vec<[u8; 3]>,
}

impl Pixels {
    /// Every pixel with its (x, y).
    pub fn enumerate(&self) -> impl Iterator<Item = (u32, u32, [u8; 3])> + '_ {
        let width = self.width.max(1) as usize;
        self.rgb
            .iter()
            .enumerate()
            .map(move |(i, p)| ((i % width) as u32, (i / width) as u32, *p))
    }
}

/// Reads a PNG of any colour type as 8-bit RGB (alpha dropped, grey and palettes expanded).
pub fn read_png(path: &Path) -> Result<Pixels, GraphError> {
    let fail = |message: String| GraphError::Draw {
        path: path.display().to_string(),
        message: format!("cannot read back: {message}"),
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| fail(e.to_string()))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| fail(e.to_string()))?;
    let bytes = &buf[..frame.buffer_size()];
    let rgb = match frame.color_type {
        png::ColorType::Rgb => bytes.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect(),
        png::ColorType::Rgba => bytes.chunks_exact(4).map(|c| [c[0], c[1], c[2]]).collect(),
        png::ColorType::Grayscale => bytes.iter().map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => {
            bytes.chunks_exact(2).map(|c| [c[0], c[0], c[0]]).collect()
        }
        other => return Err(fail(format!("unexpected colour type {other:?}"))),
    };
    Ok(Pixels {
        width: frame.width,
        height: frame.height,
        rgb,
    })
}

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

/// The region inside the axes of a [`super::SIZE`] plot (x0, y0, x1, y1), clear of labels.
pub const PLOT_REGION: (u32, u32, u32, u32) = (110, 70, 715, 530);

/// Reads a PNG and counts the non-white pixels in `region` (x0, y0, x1, y1, exclusive ends).
pub fn png_ink(path: &Path, region: (u32, u32, u32, u32)) -> Result<PngInk, GraphError> {
    let pixels = read_png(path)?;
    let (x0, y0, x1, y1) = region;
    let ink = pixels
        .enumerate()
        .filter(|(x, y, p)| (x0..x1).contains(x) && (y0..y1).contains(y) && *p != [255, 255, 255])
        .count() as u64;
    Ok(PngInk {
        width: pixels.width,
        height: pixels.height,
        ink,
    })
}
