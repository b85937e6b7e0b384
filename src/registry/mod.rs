//! Registry access: tag to digest resolution, exact manifest bytes,
//! credentials from auth files.
