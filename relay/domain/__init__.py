"""The pure domain: the WMS event, its signature, the outcome of an attempt, retry plans and
routing. No I/O: everything here is testable without Redis or the network."""
