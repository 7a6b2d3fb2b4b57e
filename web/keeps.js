// "What this site keeps on your computer": the explanation, and the button that removes it.
import { forgetEverything } from './forget.js';
import { fill, t } from './messages.js';

fill();
document.getElementById('forget').addEventListener('click', async () => {
  await forgetEverything();
  document.getElementById('forgotten').textContent = t('done.forgotten');
});
