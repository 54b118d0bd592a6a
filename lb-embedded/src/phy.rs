//! The two views of the real device that the gateway lends smoltcp's `Interface`: one that
//! receives exactly the one frame the gateway decided is the interface's own, and one that only
//! transmits. Either way the interface never reads the real device's receive queue itself:
//! every received frame is seen by the gateway first.

use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant as SmolInstant;

/// Yields `frame` once as a received frame; transmits through `inner`.
pub(crate) struct OneFrame<'f, 'd, D: Device + ?Sized> {
    pub(crate) frame: Option<&'f [u8]>,
    pub(crate) inner: &'d mut D,
}

/// Receives nothing; transmits through `inner`.
pub(crate) struct TxOnly<'d, D: Device + ?Sized> {
    pub(crate) inner: &'d mut D,
}

/// The receive token of [`OneFrame`].
pub(crate) struct FrameRx<'f> {
    frame: &'f [u8],
}

impl phy::RxToken for FrameRx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

impl<'f, 'd, D: Device + ?Sized> Device for OneFrame<'f, 'd, D> {
    type RxToken<'a>
        = FrameRx<'f>
    where
        Self: 'a;
    type TxToken<'a>
        = D::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, now: SmolInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.frame?;
        let tx = self.inner.transmit(now)?;
        self.frame = None;
        Some((FrameRx { frame }, tx))
    }

    fn transmit(&mut self, now: SmolInstant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

impl<'d, D: Device + ?Sized> Device for TxOnly<'d, D> {
    type RxToken<'a>
        = FrameRx<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = D::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _now: SmolInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        None
    }

    fn transmit(&mut self, now: SmolInstant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}
