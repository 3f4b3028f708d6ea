//! Small macros shared by the layers.

/// `get_ref`, `get_mut` and `into_inner` for a service wrapping an inner service in `$field`.
macro_rules! inner_service_accessors {
    ($field:ident: $ty:ident) => {
        /// The inner service.
        pub fn get_ref(&self) -> &$ty {
            &self.$field
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut $ty {
            &mut self.$field
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> $ty {
            self.$field
        }
    };
}

pub(crate) use inner_service_accessors;

/// `memchr::memmem::find($hay, $needle)` with the needle's searcher built once: building one
/// costs more instructions (~700) than searching a 1 KiB body.
macro_rules! find_bytes {
    ($hay:expr, $needle:literal) => {{
        static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new($needle));
        FINDER.find($hay)
    }};
}

pub(crate) use find_bytes;
