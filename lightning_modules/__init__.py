"""One LightningModule per paper, each beside the plain ``nn.Module`` networks it trains."""
