"""Hardware: FFA algebra and the Amaranth accelerator (imports only ``ffacc.firmware``)."""
