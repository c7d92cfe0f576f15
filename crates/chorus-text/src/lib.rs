//! The text front end: normalization, segmentation, phonemization and offset maps back to the original text.

pub mod normalize;
