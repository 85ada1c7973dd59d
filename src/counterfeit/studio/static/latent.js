// The Latent explorer panel (interpolation, arithmetic, latent sliders).
"use strict";

Studio.onTab.latent = () => {
  $("#latent-body").innerHTML = '<p class="muted">The latent explorer is not built yet.</p>';
};
